package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	"github.com/testum/testum/libs/api"
	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/hostexpr"
	"github.com/testum/testum/libs/remote"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

const (
	maxCommandBytes = 64 << 10
	maxScriptBytes  = 4 << 20
)

func (g *Gateway) runCreate(c *fiber.Ctx) error {
	var req api.RunRequest
	if err := decode(c, &req); err != nil {
		return err
	}
	run, err := g.createRun(c, req, nil)
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
	run, err := g.createRun(c, api.RunRequest{
		Command: req.Command, Timeout: req.Timeout, Targets: api.Targets{PlatformIDs: []int64{id}},
	}, nil)
	if err != nil {
		return err
	}
	return c.Status(fiber.StatusCreated).JSON(api.TaskResponse{TaskID: run.ID.String(), ID: run.ID.String()})
}

// createRun validates a run request, resolves its targets and stores the
// run with its hosts and the audit entry in one transaction; then it
// publishes the run for a coordinator. A run whose publish fails is still
// accepted: it is in PostgreSQL, and the reaper publishes it again.
func (g *Gateway) createRun(c *fiber.Ctx, req api.RunRequest, parent *uuid.UUID) (testum.Run, error) {
	spec, err := g.runSpec(req)
	if err != nil {
		return testum.Run{}, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return testum.Run{}, err
	}
	ctx := c.UserContext()
	nr := store.NewRun{ID: id, Kind: "command", Command: spec.Command, Spec: spec, ParentRunID: parent,
		Targets: targetsJSON(req.Targets)}
	if spec.Script != nil {
		nr.Kind = "script"
		nr.Command = scriptTitle(spec.Script)
	}
	if p := principal(c); p != nil {
		id := p.UserID
		nr.CreatedBy, nr.CreatedByName = &id, p.Username
	}
	// Targets are resolved before the transaction that stores the run: a
	// costly expression then holds no transaction open.
	hosts, err := g.resolveTargets(ctx, req.Targets)
	if err != nil {
		return testum.Run{}, err
	}
	nr.Hosts = hosts
	var run testum.Run
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		if run, err = tx.RunCreate(ctx, nr); err != nil {
			return err
		}
		return g.audit(ctx, c, tx, "run.create", "run:"+id.String(), map[string]any{
			"kind": nr.Kind, "command": nr.Command, "hosts": len(hosts), "targets": nr.Targets,
		})
	})
	if err != nil {
		return testum.Run{}, err
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := bus.PublishRun(pctx, g.js, id, bus.RunMsgID(id, "")); err != nil {
		g.log.Warn("run stored but not published yet; the reaper will publish it", "run", id, "err", err)
	}
	return run, nil
}

// runSpec validates what runs and how.
func (g *Gateway) runSpec(req api.RunRequest) (testum.RunSpec, error) {
	spec := testum.RunSpec{RetryLost: req.RetryLost, Dir: req.Dir, Sudo: req.Sudo}
	spec.Env, spec.SecretEnv, spec.SecretEnvNames = runEnv(req.Env)
	cmd := strings.TrimSpace(req.Command)
	switch {
	case cmd != "" && req.Script != nil:
		return spec, testum.Invalid("give either command or script, not both")
	case req.Script != nil:
		if len(req.Script.Body) > maxScriptBytes {
			return spec, testum.Invalid("script is longer than %d bytes", maxScriptBytes)
		}
		spec.Script = &testum.Script{Interpreter: strings.TrimSpace(req.Script.Interpreter), Body: req.Script.Body, Args: req.Script.Args}
		if spec.Script.Interpreter == "" {
			spec.Script.Interpreter = "sh"
		}
	case cmd == "":
		return spec, testum.Invalid("command is required and must not be empty")
	case len(req.Command) > maxCommandBytes:
		return spec, testum.Invalid("command is longer than %d bytes: send a script instead", maxCommandBytes)
	case strings.ContainsRune(req.Command, 0):
		return spec, testum.Invalid("command contains a NUL byte")
	default:
		spec.Command = req.Command
	}
	if err := remote.Check(spec); err != nil {
		return spec, testum.Invalid("%v", err)
	}

	spec.TimeoutSeconds = g.cfg.DefaultTimeout
	if req.Timeout != nil {
		if *req.Timeout <= 0 {
			return spec, testum.Invalid("timeout %d: want a positive number of seconds", *req.Timeout)
		}
		if *req.Timeout > g.cfg.MaxTimeout {
			return spec, testum.Invalid("timeout %d: at most %d seconds", *req.Timeout, g.cfg.MaxTimeout)
		}
		spec.TimeoutSeconds = *req.Timeout
	}
	spec.Parallelism = g.cfg.DefaultParallel
	if req.Parallelism != nil {
		if *req.Parallelism < 1 || *req.Parallelism > 100000 {
			return spec, testum.Invalid("parallelism %d: want 1 to 100000", *req.Parallelism)
		}
		spec.Parallelism = *req.Parallelism
	}
	if req.Deadline != nil {
		if *req.Deadline <= 0 {
			return spec, testum.Invalid("deadline %d: want a positive number of seconds", *req.Deadline)
		}
		if *req.Deadline > g.cfg.MaxTimeout { // seconds × time.Second overflows past 292 years
			return spec, testum.Invalid("deadline %d: at most %d seconds", *req.Deadline, g.cfg.MaxTimeout)
		}
		spec.DeadlineSecs = *req.Deadline
	}
	var err error
	if spec.Batch, err = amountField("batch", req.Batch, 1); err != nil {
		return spec, err
	}
	if spec.MaxFailures, err = amountField("max_failures", req.MaxFailures, 0); err != nil {
		return spec, err
	}
	return spec, nil
}

// amountField reads a count or percentage given as a JSON number or string.
func amountField(name string, raw json.RawMessage, least int) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", testum.Invalid("%s: want a number or a percentage string", name)
		}
	} else {
		s = string(raw)
	}
	a, err := testum.ParseAmount(s)
	if err != nil {
		return "", testum.Invalid("%s: %v", name, err)
	}
	if (a.IsPercent && least > 0 && a.Percent <= 0) || (!a.IsPercent && a.Count < least) {
		return "", testum.Invalid("%s %s: must be at least %d", name, a, least)
	}
	return a.String(), nil
}

// resolveTargets turns the request's selectors into the run's hosts, in
// the order given, each platform once. It reads platforms in short
// transactions of their own and matches the host expression outside any
// transaction, within hostexpr's bounds and the request's context.
func (g *Gateway) resolveTargets(ctx context.Context, t api.Targets) ([]store.NewRunHost, error) {
	labels, hosts := strings.TrimSpace(t.Labels), strings.TrimSpace(t.Hosts)
	if len(t.PlatformIDs) == 0 && labels == "" && hosts == "" {
		return nil, testum.Invalid("targets are empty: give platform_ids, labels or hosts")
	}
	if len(hosts) > hostexpr.MaxExprBytes { // before reading anything
		return nil, &testum.Error{Code: testum.CodeInvalid, Reason: "hosts_too_complex",
			Message: fmt.Sprintf("hosts: the expression is %d bytes long; at most %d", len(hosts), hostexpr.MaxExprBytes)}
	}
	// The union of what each selector names, in order: ids, then labels,
	// then the host expression.
	var ids []int64
	var byName map[string]int64
	var names []string
	err := g.st.InTx(ctx, func(tx *store.Tx) error {
		if len(t.PlatformIDs) > 0 {
			ps, err := tx.PlatformsByIDs(ctx, t.PlatformIDs)
			if err != nil {
				return err
			}
			known := make(map[int64]bool, len(ps))
			for _, p := range ps {
				known[p.ID] = true
			}
			var missing []string
			for _, id := range t.PlatformIDs {
				if !known[id] {
					missing = append(missing, fmt.Sprint(id))
				}
			}
			if len(missing) > 0 {
				return testum.Invalid("unknown platform id(s): %s", strings.Join(missing, ", "))
			}
			ids = append(ids, t.PlatformIDs...)
		}
		if labels != "" {
			sel, err := ParseLabelList(labels)
			if err != nil {
				return err
			}
			ps, err := tx.PlatformsMatching(ctx, sel, maxRunHosts+1)
			if err != nil {
				return err
			}
			if len(ps) == 0 {
				return testum.Invalid("no platform has the labels %s", labels)
			}
			for _, p := range ps {
				ids = append(ids, p.ID)
			}
		}
		if hosts != "" {
			var err error
			byName, names, err = tx.PlatformNames(ctx)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if hosts != "" {
		matched, unknown, err := hostexpr.MatchContext(ctx, hosts, names)
		if err != nil {
			return nil, hostsError(err)
		}
		if len(unknown) > 0 {
			return nil, testum.Invalid("hosts: no platform named %s", hostexpr.Fold(unknown))
		}
		if len(matched) == 0 {
			return nil, testum.Invalid("hosts %q names no platform", hosts)
		}
		for _, n := range matched {
			ids = append(ids, byName[n])
		}
	}
	seen := map[int64]bool{}
	var uniq []int64
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	if len(uniq) > maxRunHosts {
		return nil, testum.Invalid("the targets name %d hosts; a run takes at most %d", len(uniq), maxRunHosts)
	}
	var ps []testum.Platform
	err = g.st.InTx(ctx, func(tx *store.Tx) error {
		var err error
		ps, err = tx.PlatformsByIDs(ctx, uniq)
		return err
	})
	if err != nil {
		return nil, err
	}
	byID := make(map[int64]testum.Platform, len(ps))
	for _, p := range ps {
		byID[p.ID] = p
	}
	out := make([]store.NewRunHost, 0, len(uniq))
	for _, id := range uniq {
		p, ok := byID[id]
		if !ok { // deleted since it was named
			return nil, testum.Invalid("platform %d no longer exists", id)
		}
		out = append(out, store.NewRunHost{PlatformID: id, Name: p.Name, Address: fmt.Sprintf("%s:%d", p.Host, p.Port)})
	}
	return out, nil
}

// hostsError is the API's answer to a host expression that failed: over a
// bound of hostexpr, a 400 with code hosts_too_complex naming the bound; a
// request that ended meanwhile, its context's error.
func hostsError(err error) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	msg := "hosts: " + strings.TrimPrefix(err.Error(), "hostexpr: ")
	if errors.Is(err, hostexpr.ErrTooComplex) {
		return &testum.Error{Code: testum.CodeInvalid, Reason: "hosts_too_complex", Message: msg}
	}
	return testum.Invalid("%s", msg)
}

// maxRunHosts bounds one run's fan-out.
const maxRunHosts = 20000

func targetsJSON(t api.Targets) map[string]any {
	m := map[string]any{}
	if len(t.PlatformIDs) > 0 {
		m["platform_ids"] = t.PlatformIDs
	}
	if t.Labels != "" {
		m["labels"] = t.Labels
	}
	if t.Hosts != "" {
		m["hosts"] = t.Hosts
	}
	return m
}

func scriptTitle(s *testum.Script) string {
	first, _, _ := strings.Cut(strings.TrimSpace(s.Body), "\n")
	return fmt.Sprintf("[%s script] %s", s.Interpreter, first)
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
		if f.Labels, err = ParseLabelList(v); err != nil {
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
	runs, total, err := g.st.RunSearch(c.UserContext(), f, limit, offset)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	counts, err := g.st.RunHostCountsMany(c.UserContext(), ids)
	if err != nil {
		return err
	}
	out := make([]api.Run, len(runs))
	for i, r := range runs {
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
	hosts, err := g.resolveTargets(c.UserContext(), t)
	if err != nil {
		return err
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return c.JSON(fiber.Map{"count": len(hosts), "hosts": hostexpr.Fold(names), "names": names})
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
