package gateway

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"

	apiclient "github.com/testum/testum/libs/api/client"
	"github.com/testum/testum/libs/hostexpr"
	"github.com/testum/testum/libs/logstore"
	"github.com/testum/testum/libs/testum"
)

func runParam(c *fiber.Ctx) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Params("id"))
	if err != nil {
		return id, testum.NotFound("run %q not found", c.Params("id"))
	}
	return id, nil
}

// runCancel asks every executor to end the run's sessions (and the remote
// processes with them); the coordinator marks the hosts not started
// canceled. Canceling again, or a finished run, changes nothing.
func (g *Gateway) runCancel(c *fiber.Ctx) error {
	id, err := runParam(c)
	if err != nil {
		return err
	}
	run, err := g.runs.Cancel(c.UserContext(), g.actor(c), id)
	if err != nil {
		return err
	}
	return c.Status(http.StatusAccepted).JSON(apiclient.CancelResponse{Id: id, State: apiclient.RunState(run.State), CancelRequested: true})
}

// runRerun runs a finished run again, on all its hosts or only (the
// default) on the ones that did not end ok.
func (g *Gateway) runRerun(c *fiber.Ctx) error {
	id, err := runParam(c)
	if err != nil {
		return err
	}
	var req apiclient.RerunRequest
	if len(c.Body()) > 0 {
		if err := decode(c, &req); err != nil {
			return err
		}
	}
	run, err := g.runs.Rerun(c.UserContext(), g.actor(c), id, string(deref(req.Only)))
	if err != nil {
		return err
	}
	return c.Status(http.StatusCreated).JSON(runCreatedWire(run))
}

// runHostLog downloads one host's archived output: the raw bytes
// (stdout and stderr interleaved as they arrived), or with ?format=text
// each piece prefixed by its time and stream.
func (g *Gateway) runHostLog(c *fiber.Ctx) error {
	id, err := runParam(c)
	if err != nil {
		return err
	}
	idx, err := strconv.Atoi(c.Params("idx"))
	if err != nil || idx < 0 {
		return testum.Invalid("host index %q: want a non-negative integer", c.Params("idx"))
	}
	ctx := c.UserContext()
	h, err := g.st.RunHost(ctx, id, idx)
	if err != nil {
		return err
	}
	if h.LogKey == "" {
		if !h.State.Final() {
			return testum.Conflict("host %s has not finished: follow it on the WebSocket", h.Name)
		}
		c.Set(fiber.HeaderContentType, "application/octet-stream")
		return c.Send(nil)
	}
	// The raw log is streamed, after the handler returns: its reader gets a
	// context of its own, ended when fasthttp closes the body.
	streamCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logDownloadLimit)
	r, err := g.logs.Get(streamCtx, h.LogKey)
	if errors.Is(err, logstore.ErrNotFound) {
		cancel()
		return testum.NotFound("the log of host %s is gone from the log store", h.Name)
	}
	if err != nil {
		cancel()
		return err
	}
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="%s-%s.log"`, id, safeFileName(h.Name)))
	if c.Query("format") != "text" {
		c.Set(fiber.HeaderContentType, "application/octet-stream")
		c.Response().SetBodyStream(&streamedLog{r: r, cancel: cancel}, -1)
		return nil
	}
	defer cancel()
	defer func() { _ = r.Close() }() // a reader's close has nothing to report
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var text strings.Builder
	if err := renderTimestamped(ctx, g.logs, logstore.IndexKeyOf(h.LogKey), raw, &text); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "text/plain; charset=utf-8")
	return c.SendString(text.String())
}

// streamedLog is a log being sent: closing it (fasthttp does, once the body
// is written or the client went away) closes the log and ends its context.
type streamedLog struct {
	r      io.ReadCloser
	cancel context.CancelFunc
}

func (l *streamedLog) Read(p []byte) (int, error) { return l.r.Read(p) }

func (l *streamedLog) Close() error {
	err := l.r.Close()
	l.cancel()
	return err
}

// renderTimestamped writes "TIME STREAM | line" for each indexed piece.
func renderTimestamped(ctx context.Context, logs logstore.Store, indexKey string, raw []byte, w io.Writer) error {
	ir, err := logs.Get(ctx, indexKey)
	if err != nil {
		_, werr := w.Write(raw)
		return werr
	}
	defer func() { _ = ir.Close() }()
	sc := bufio.NewScanner(ir)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			continue
		}
		off, err1 := strconv.ParseInt(f[2], 10, 64)
		n, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil || off < 0 || off+n > int64(len(raw)) {
			continue
		}
		if f[1] == "truncated" {
			fmt.Fprintf(w, "%s %s | output cut at %d bytes\n", f[0], f[1], off)
			continue
		}
		for _, line := range strings.SplitAfter(string(raw[off:off+n]), "\n") {
			if line == "" {
				continue
			}
			fmt.Fprintf(w, "%s %s | %s", f[0], f[1], line)
			if !strings.HasSuffix(line, "\n") {
				fmt.Fprintln(w)
			}
		}
	}
	return sc.Err()
}

func safeFileName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// runLogs downloads every host's log of a run as one tar.gz.
func (g *Gateway) runLogs(c *fiber.Ctx) error {
	id, err := runParam(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	hosts, err := g.st.RunHosts(ctx, id)
	if err != nil {
		return err
	}
	if _, err := g.st.Run(ctx, id); err != nil {
		return err
	}
	c.Set(fiber.HeaderContentType, "application/gzip")
	c.Set(fiber.HeaderContentDisposition, fmt.Sprintf(`attachment; filename="run-%s-logs.tar.gz"`, id))
	// The archive is written after the handler returns (SendStream reads it
	// then), when the request's context has ended: it gets its own, bounded
	// by how long a client may take to download, and ended when fasthttp
	// closes the pipe (the client went away).
	streamCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), logDownloadLimit)
	pr, pw := io.Pipe()
	go func() {
		defer cancel()
		pw.CloseWithError(writeLogArchive(streamCtx, g.logs, hosts, pw))
	}()
	return c.SendStream(pr)
}

// logDownloadLimit bounds the writing of one run's log archive.
const logDownloadLimit = 30 * time.Minute

// writeLogArchive writes a tar.gz of every host log. A host whose log
// cannot be read gets an entry saying why instead of its log, so that a
// missing log is visible rather than silently absent.
func writeLogArchive(ctx context.Context, logs logstore.Store, hosts []testum.RunHost, w io.Writer) error {
	gz := gzip.NewWriter(w)
	tw := tar.NewWriter(gz)
	for _, h := range hosts {
		if h.LogKey == "" {
			continue
		}
		name := fmt.Sprintf("%03d-%s.log", h.Idx, safeFileName(h.Name))
		if err := addLog(ctx, logs, tw, name, h.LogKey); err != nil {
			if ctx.Err() != nil {
				return err
			}
			msg := []byte(fmt.Sprintf("the log of host %s could not be read: %v\n", h.Name, err))
			if err := tw.WriteHeader(&tar.Header{Name: name + ".error", Mode: 0o644, Size: int64(len(msg)), ModTime: time.Now()}); err != nil {
				return err
			}
			if _, err := tw.Write(msg); err != nil {
				return err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func addLog(ctx context.Context, logs logstore.Store, tw *tar.Writer, name, key string) error {
	info, err := logs.Stat(ctx, key)
	if err != nil {
		return err
	}
	r, err := logs.Get(ctx, key)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }() // a reader's close has nothing to report
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: info.Size, ModTime: info.Modified}); err != nil {
		return err
	}
	_, err = io.CopyN(tw, r, info.Size)
	return err
}

// runSummary groups hosts whose output, state and exit code are the same,
// as ClusterShell's gather mode or dshbak -c: one entry per distinct output.
func (g *Gateway) runSummary(c *fiber.Ctx) error {
	id, err := runParam(c)
	if err != nil {
		return err
	}
	ctx := c.UserContext()
	if _, err := g.st.Run(ctx, id); err != nil {
		return err
	}
	hosts, err := g.st.RunHosts(ctx, id)
	if err != nil {
		return err
	}
	keyOf := map[string]string{}
	byName := map[string]testum.RunHost{}
	for _, h := range hosts {
		exit := "-"
		if h.ExitCode != nil {
			exit = strconv.Itoa(*h.ExitCode)
		}
		keyOf[h.Name] = string(h.State) + "\x00" + exit + "\x00" + h.OutputDigest
		byName[h.Name] = h
	}
	var groups []apiclient.SummaryGroup
	for _, gr := range hostexpr.Gather(keyOf) {
		first := byName[gr.Hosts[0]]
		sg := apiclient.SummaryGroup{Hosts: gr.Folded, Names: gr.Hosts, Count: len(gr.Hosts), State: apiclient.HostState(first.State),
			ExitCode: first.ExitCode, Digest: first.OutputDigest, Bytes: first.OutputBytes}
		if first.LogKey != "" && first.OutputBytes <= 64<<10 {
			if r, err := g.logs.Get(ctx, first.LogKey); err == nil {
				b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
				_ = r.Close()
				sg.Output = opt(string(b)) // the output itself, when small
			}
		}
		groups = append(groups, sg)
	}
	out := apiclient.RunSummary{RunId: id}
	if groups != nil {
		out.Groups = &groups
	}
	return c.JSON(out)
}
