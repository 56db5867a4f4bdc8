package gateway

import (
	"context"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/hostexpr"
	"github.com/testum/testum/libs/runs"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

func (g *Gateway) runCreate(c *fiber.Ctx) error {
	var req apiclient.RunRequest
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
	return c.Status(fiber.StatusCreated).JSON(runCreatedWire(run))
}

// platformRunCommand is the seed's single-host run: {"command","timeout"}
// → {"task_id"}, a run of one host.
func (g *Gateway) platformRunCommand(c *fiber.Ctx) error {
	id, err := paramID(c, "id")
	if err != nil {
		return err
	}
	var req apiclient.RunCommandRequest
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
	return c.Status(fiber.StatusCreated).JSON(apiclient.TaskResponse{TaskId: run.ID, Id: run.ID})
}

func (g *Gateway) runGet(c *fiber.Ctx) error {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return testum.NotFound("run %q not found", c.Params("id"))
	}
	// Clients polling one run share its reads (readshare.go): the answer
	// is the same for every reader, and one of a 1000-host run is large.
	b, err := g.runReads.do(c.UserContext(), id, func(ctx context.Context) ([]byte, error) {
		run, err := g.st.Run(ctx, id)
		if err != nil {
			return nil, err
		}
		hosts, err := g.st.RunHosts(ctx, id)
		if err != nil {
			return nil, err
		}
		return json.Marshal(runWire(run, hosts))
	})
	if err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(b)
}

// runList is the history: ?state=&user=&platform=&label=&q=&since=&until=,
// paged by offset or, with ?before_id=<run id>, after that run (keyset).
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
	fetch := limit
	if v := c.Query("before_id"); v != "" {
		id, err := uuid.Parse(v)
		if err != nil {
			return testum.Invalid("before_id %q: want a run id", v)
		}
		f.BeforeID, fetch = &id, limit+1 // one more says whether a next page follows
	}
	list, total, err := g.st.RunSearch(c.UserContext(), f, fetch, offset)
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
	out := make([]apiclient.Run, len(list))
	for i, r := range list {
		out[i] = runWire(r, nil)
		byState := map[string]int{}
		for state, n := range counts[r.ID] {
			byState[string(state)] = n
		}
		out[i].Counts = &byState
	}
	if f.BeforeID != nil {
		return sendKeysetPage(c, out, total, limit, func(r apiclient.Run) string { return r.Id.String() })
	}
	return sendPage(c, out, total, limit, offset)
}

// runPreview resolves targets without running anything: the console's
// live preview of the hosts a run would take.
func (g *Gateway) runPreview(c *fiber.Ctx) error {
	var t apiclient.Targets
	if err := decode(c, &t); err != nil {
		return err
	}
	names, err := g.runs.Preview(c.UserContext(), runTargets(t))
	if err != nil {
		return err
	}
	return c.JSON(apiclient.Preview{Count: len(names), Hosts: hostexpr.Fold(names), Names: names})
}
