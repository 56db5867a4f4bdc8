package gateway

import (
	"context"
	"sort"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/testum"
)

// maskedEnvValue stands for a secret env value wherever the API shows one.
const maskedEnvValue = "********"

// runEnv splits a run request's env into plain values and values marked
// secret (stored sealed, apart from the spec), and lists the secret names.
func runEnv(env map[string]api.EnvValue) (plain, secret map[string]string, secretNames []string) {
	for k, v := range env {
		if !v.Secret {
			if plain == nil {
				plain = map[string]string{}
			}
			plain[k] = v.Value
			continue
		}
		if secret == nil {
			secret = map[string]string{}
		}
		secret[k] = v.Value
		secretNames = append(secretNames, k)
	}
	sort.Strings(secretNames)
	return plain, secret, secretNames
}

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

// rerunEnv is the env of a run to send again: the plain values and the
// secret ones, opened from the store and marked secret again.
func (g *Gateway) rerunEnv(ctx context.Context, id uuid.UUID, spec testum.RunSpec) (map[string]api.EnvValue, error) {
	out := make(map[string]api.EnvValue, len(spec.Env)+len(spec.SecretEnvNames))
	for k, v := range spec.Env {
		out[k] = api.EnvValue{Value: v}
	}
	if len(spec.SecretEnvNames) > 0 {
		secret, err := g.st.RunSecretEnv(ctx, id)
		if err != nil {
			return nil, err
		}
		for k, v := range secret {
			out[k] = api.EnvValue{Value: v, Secret: true}
		}
	}
	return out, nil
}
