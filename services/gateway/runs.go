package gateway

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/hostexpr"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

func (g *Gateway) runCreate(c *fiber.Ctx) error {
	var req api.RunRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	rr, err := runRequest(req)
	if err != nil {
		return err
	}
	run, err := g.runs.Create(c.UserContext(), g.actor(c), rr)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(api.RunCreated{
		ID: run.ID.String(), TaskID: run.ID.String(), State: string(run.State), Hosts: run.HostCount,
	})
}

// platformRunCommand is the seed's single-host run: {"command","timeout"}
// → {"task_id"}, a run of one host.
func (g *Gateway) platformRunCommand(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req api.RunCommandRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	if _, err := g.st.Platform(c.UserContext(), id); err != nil {
		return err
	}
	run, err := g.runs.Create(c.UserContext(), g.actor(c), runs.Request{
		Command: req.Command, Timeout: req.Timeout, Targets: runs.Targets{PlatformIDs: []int64{id}},
	})
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(api.TaskResponse{TaskID: run.ID.String(), ID: run.ID.String()})
}

// runRequest turns a decoded run request into the runs service's.
func runRequest(req api.RunRequest) (runs.Request, error) {
	r := runs.Request{Command: req.Command, Targets: runTargets(req.Targets), Parallelism: req.Parallelism,
		Timeout: req.Timeout, Deadline: req.Deadline, RetryLost: req.RetryLost, Dir: req.Dir, Sudo: req.Sudo}
	if req.Script != nil {
		r.Script = &testum.Script{Interpreter: req.Script.Interpreter, Body: req.Script.Body, Args: req.Script.Args}
	}
	if len(req.Env) > 0 {
		r.Env = make(map[string]runs.EnvValue, len(req.Env))
		for k, v := range req.Env {
			r.Env[k] = runs.EnvValue{Value: v.Value, Secret: v.Secret}
		}
	}
	var err error
	if r.Batch, err = amountText("batch", req.Batch); err != nil {
		return r, err
	}
	if r.MaxFailures, err = amountText("max_failures", req.MaxFailures); err != nil {
		return r, err
	}
	return r, nil
}

func runTargets(t api.Targets) runs.Targets {
	return runs.Targets{PlatformIDs: t.PlatformIDs, Labels: t.Labels, Hosts: t.Hosts}
}

// amountText reads a count or percentage given as a JSON number or string;
// nil when it is left out. The runs service judges the value.
func amountText(name string, raw json.RawMessage) (*string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, testum.Invalid("%s: want a number or a percentage string", name)
		}
	} else {
		s = string(raw)
	}
	return &s, nil
}

func (g *Gateway) runGet(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return testum.NotFound("run %q not found", c.Params("id"))
	}
	ctx := c.UserContext()
	run, err := g.st.Run(ctx, id)
	if err != nil {
		return err
	}
	hosts, err := g.st.RunHosts(ctx, id)
	if err != nil {
		return err
	}
	return c.JSON(runJSON(run, hosts))
}

// runList is the history: ?state=&user=&platform=&label=&q=&since=&until=.
func (g *Gateway) runList(c *fiber.Ctx) error {
	limit, offset, err := page(c)
	if err != nil {
		return err
	}
	f := store.RunFilter{State: c.Query("state"), User: c.Query("user"), Query: c.Query("q")}
	if f.State != "" && !testum.RunState(f.State).Valid() {
		return testum.Invalid("state %q is not a run state", f.State)
	}
	if v := c.Query("platform"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return testum.Invalid("platform %q: want a platform id", v)
		}
		f.PlatformID = &id
	}
	if v := c.Query("label", c.Query("labels")); v != "" {
		if f.Labels, err = testum.ParseLabelList(v); err != nil {
			return err
		}
	}
	for name, dst := range map[string]**time.Time{"since": &f.Since, "until": &f.Until} {
		if v := c.Query(name); v != "" {
			t, err := time.Parse(time.RFC3339, v)
			if err != nil {
				return testum.Invalid("%s must be an RFC 3339 time like 2026-01-02T15:04:05Z", name)
			}
			*dst = &t
		}
	}
	list, total, err := g.st.RunSearch(c.UserContext(), f, limit, offset)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(list))
	for i, r := range list {
		ids[i] = r.ID
	}
	counts, err := g.st.RunHostCountsMany(c.UserContext(), ids)
	if err != nil {
		return err
	}
	out := make([]api.Run, len(list))
	for i, r := range list {
		out[i] = runJSON(r, nil)
		out[i].Counts = map[string]int{}
		for state, n := range counts[r.ID] {
			out[i].Counts[string(state)] = n
		}
	}
	return sendPage(c, out, total, limit, offset)
}

// runPreview resolves targets without running anything: the console's
// live preview of the hosts a run would take.
func (g *Gateway) runPreview(c *fiber.Ctx) error {
	var t api.Targets
	if err := decode(c, &t); err != nil {
		return err
	}
	names, err := g.runs.Preview(c.UserContext(), runTargets(t))
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"count": len(names), "hosts": hostexpr.Fold(names), "names": names})
}

// runJSON renders a run; with hosts, also per-host rows and counts.
func runJSON(r testum.Run, hosts []testum.RunHost) api.Run {
	out := api.Run{
		ID: r.ID.String(), TaskID: r.ID.String(), State: string(r.State), Kind: r.Kind, Command: r.Command,
		Targets: r.Targets, Parallelism: r.Parallelism, Timeout: r.TimeoutSeconds, Batch: r.Spec.Batch,
		MaxFailures: r.Spec.MaxFailures, Deadline: r.Spec.DeadlineSecs, RetryLost: r.Spec.RetryLost,
		HostCount: r.HostCount, CreatedBy: r.CreatedByName, AbortReason: r.AbortReason, Error: r.Error,
		CancelRequested: r.CancelRequested, CreatedAt: r.CreatedAt, StartedAt: r.StartedAt, FinishedAt: r.FinishedAt,
	}
	out.Env = envJSON(r.Spec)
	if r.Spec.Script != nil {
		out.Script = &api.Script{Interpreter: r.Spec.Script.Interpreter, Body: r.Spec.Script.Body, Args: r.Spec.Script.Args}
	}
	if r.ParentRunID != nil {
		s := r.ParentRunID.String()
		out.ParentRunID = &s
	}
	if hosts != nil {
		out.Counts = map[string]int{}
		out.Hosts = make([]api.RunHost, len(hosts))
		for i, h := range hosts {
			out.Counts[string(h.State)]++
			out.Hosts[i] = runHostJSON(h)
		}
	}
	return out
}

func runHostJSON(h testum.RunHost) api.RunHost {
	out := api.RunHost{
		Idx: h.Idx, PlatformID: h.PlatformID, Name: h.Name, Address: h.Address, State: string(h.State),
		ExitCode: h.ExitCode, Signal: h.Signal, Error: h.Error, Attempt: h.Attempt, Executor: h.ExecutorID,
		OutputBytes: h.OutputBytes, Truncated: h.Truncated, StartedAt: h.StartedAt, FinishedAt: h.FinishedAt,
	}
	if h.StartedAt != nil && h.FinishedAt != nil {
		d := h.FinishedAt.Sub(*h.StartedAt).Milliseconds()
		out.DurationMS = &d
	}
	return out
}
