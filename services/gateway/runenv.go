package gateway

import (
	"github.com/testum/testum/libs/testum"
)

// maskedEnvValue stands for a secret env value wherever the API shows one.
const maskedEnvValue = "********"

// envJSON is a run's env as the API shows it: secret values masked.
func envJSON(spec testum.RunSpec) map[string]string {
	if len(spec.Env) == 0 && len(spec.SecretEnvNames) == 0 {
		return nil
	}
	out := make(map[string]string, len(spec.Env)+len(spec.SecretEnvNames))
	for k, v := range spec.Env {
		out[k] = v
	}
	for _, k := range spec.SecretEnvNames {
		out[k] = maskedEnvValue
	}
	return out
}
