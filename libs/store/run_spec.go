package store

import (
	"encoding/json"

	"github.com/testum/testum/libs/testum"
)

// runSpecJSON is a run's spec as runs.spec (jsonb) holds it. Rows written
// by every earlier release must still read, so a field's name never
// changes; a new field is optional. The secret env values are not here:
// they are sealed apart in run_secret_env, the spec keeps only their names.
type runSpecJSON struct {
	Command        string            `json:"command,omitempty"`
	Script         *scriptJSON       `json:"script,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	SecretEnvNames []string          `json:"secret_env,omitempty"`
	Dir            string            `json:"dir,omitempty"`
	Sudo           bool              `json:"sudo,omitempty"`
	TimeoutSeconds int               `json:"timeout"`
	Parallelism    int               `json:"parallelism"`
	Batch          string            `json:"batch,omitempty"`
	MaxFailures    string            `json:"max_failures,omitempty"`
	DeadlineSecs   int               `json:"deadline,omitempty"`
	RetryLost      bool              `json:"retry_lost,omitempty"`
	OutputCapBytes int64             `json:"output_cap,omitempty"`
}

// scriptJSON is a run's script inside runSpecJSON.
type scriptJSON struct {
	Interpreter string   `json:"interpreter"`
	Body        string   `json:"body"`
	Args        []string `json:"args,omitempty"`
}

// encodeRunSpec is the stored JSON of a spec, without its secret values.
func encodeRunSpec(s testum.RunSpec) ([]byte, error) {
	j := runSpecJSON{
		Command: s.Command, Env: s.Env, SecretEnvNames: s.SecretEnvNames, Dir: s.Dir, Sudo: s.Sudo,
		TimeoutSeconds: s.TimeoutSeconds, Parallelism: s.Parallelism, Batch: s.Batch, MaxFailures: s.MaxFailures,
		DeadlineSecs: s.DeadlineSecs, RetryLost: s.RetryLost, OutputCapBytes: s.OutputCapBytes,
	}
	if s.Script != nil {
		j.Script = &scriptJSON{Interpreter: s.Script.Interpreter, Body: s.Script.Body, Args: s.Script.Args}
	}
	return json.Marshal(j)
}

// decodeRunSpec reads a stored spec.
func decodeRunSpec(data []byte) (testum.RunSpec, error) {
	var j runSpecJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return testum.RunSpec{}, err
	}
	s := testum.RunSpec{
		Command: j.Command, Env: j.Env, SecretEnvNames: j.SecretEnvNames, Dir: j.Dir, Sudo: j.Sudo,
		TimeoutSeconds: j.TimeoutSeconds, Parallelism: j.Parallelism, Batch: j.Batch, MaxFailures: j.MaxFailures,
		DeadlineSecs: j.DeadlineSecs, RetryLost: j.RetryLost, OutputCapBytes: j.OutputCapBytes,
	}
	if j.Script != nil {
		s.Script = &testum.Script{Interpreter: j.Script.Interpreter, Body: j.Script.Body, Args: j.Script.Args}
	}
	return s, nil
}
