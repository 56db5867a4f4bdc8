package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MaxDefaultReplicas is the most copies testum asks for when the replicas
// are not configured: three survive the loss of any one server.
const MaxDefaultReplicas = 3

// JetStream API error codes the replica probe tells apart.
const (
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074 // a server that is not in a JetStream cluster
	errCodeNoPeers              jetstream.ErrorCode = 10005 // not enough JetStream servers to place the copies
)

// Replicas is how many copies testum's streams (and any other JetStream
// asset testum creates, such as an object store) get: configured when it
// is above 0, else min(3, JetStream servers in the cluster js talks to),
// which is 1 on a single server such as serve's embedded one.
//
// The number of JetStream servers is not part of any answer an ordinary
// account gets (account info has none; the servers' own JSZ needs the
// system account), and the URLs a client discovers count servers without
// JetStream and miss those a cluster does not advertise. So Replicas asks
// the one that decides, the meta leader: it creates a tiny throwaway
// stream with 3 replicas, then 2, and the first it can place is the
// answer (the probe is deleted at once). The meta leader counts every
// server it has heard from, also one that is down for a moment. On a
// server outside any cluster no probe is made.
func Replicas(ctx context.Context, js jetstream.JetStream, configured int) (int, error) {
	if configured > 0 {
		return configured, nil
	}
	if nc := js.Conn(); nc != nil && nc.ConnectedClusterName() == "" {
		return 1, nil
	}
	for r := MaxDefaultReplicas; r > 1; r-- {
		ok, err := probeReplicas(ctx, js, r)
		if err != nil {
			return 0, fmt.Errorf("finding how many JetStream servers can hold copies (set TESTUM_STREAM_REPLICAS to skip this): %w", err)
		}
		if ok {
			return r, nil
		}
	}
	return 1, nil
}

// probeReplicas reports whether the cluster places a stream with r
// replicas.
func probeReplicas(ctx context.Context, js jetstream.JetStream, r int) (bool, error) {
	name := "TESTUM_REPLICAS_PROBE_" + strings.TrimPrefix(nats.NewInbox(), "_INBOX.")
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{"testum.probe." + strings.ToLower(name)}, Storage: jetstream.FileStorage,
		Replicas: r, MaxBytes: 1024, MaxMsgs: 1,
	})
	var apiErr *jetstream.APIError
	switch {
	case err == nil:
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := js.DeleteStream(dctx, name); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return false, fmt.Errorf("delete probe stream %s: %w", name, err)
		}
		return true, nil
	case errors.As(err, &apiErr) && (apiErr.ErrorCode == errCodeNoPeers || apiErr.ErrorCode == errCodeReplicasNotSupported):
		return false, nil
	}
	return false, err
}

// StreamChange is one setting of an existing stream that differs from the
// configuration.
type StreamChange struct {
	Stream  string
	Setting string // "replicas", "persist mode", "max age", ...
	Have    string // the stream's value
	Want    string // the configured value
}

func (c StreamChange) String() string {
	return fmt.Sprintf("%s %s %s → %s", c.Stream, c.Setting, c.Have, c.Want)
}

// streamSetting is one stream setting testum manages.
//
// What a process that merely starts may change (atStart): only what can
// neither lose data nor weaken the cluster's guarantees, because processes
// started with other settings (an old host, a forgotten variable) must
// not undo what an operator did. So:
//   - replicas, persist mode, storage and retention are kept: fewer copies
//     lose the guarantee of surviving a server, more copies is a
//     cluster-wide operation to do on purpose, and NATS cannot change the
//     other three in place;
//   - the output stream's max age and max bytes only grow at start: a larger
//     limit keeps more, a smaller one discards transcripts another process
//     was configured to keep;
//   - the maximum message size only grows at start: an older testum asks for
//     less (its chunks were smaller), and lowering it would make the newer
//     executors' chunks bounce (they size chunks by the stream: ChunkLimit);
//   - subjects, discard policy and the duplicates window are the messaging
//     contract of this version, not settings, and are brought to it at every
//     start.
//
// Everything else a stream has (placement, compression, a description an
// operator set) is left as it is. `testum migrate --streams` changes every
// managed setting in both directions.
type streamSetting struct {
	name    string
	inPlace bool // NATS can change it on an existing stream
	atStart func(have, want jetstream.StreamConfig) bool
	show    func(jetstream.StreamConfig) string
	set     func(dst *jetstream.StreamConfig, src jetstream.StreamConfig)
}

func never(_, _ jetstream.StreamConfig) bool  { return false }
func always(_, _ jetstream.StreamConfig) bool { return true }

// limit shows a limit where 0 and below mean none.
func limit[T int64 | int32 | time.Duration](v T, unit func(T) string) string {
	if v <= 0 {
		return "unlimited"
	}
	return unit(v)
}

// grows reports whether want is a larger limit than have (0 and below:
// unlimited).
func grows[T int64 | time.Duration](have, want T) bool {
	if have <= 0 {
		return false
	}
	return want <= 0 || want > have
}

var streamSettings = []streamSetting{
	{"replicas", true, never,
		func(c jetstream.StreamConfig) string { return strconv.Itoa(max(c.Replicas, 1)) },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Replicas = s.Replicas }},
	{"persist mode", false, never,
		func(c jetstream.StreamConfig) string { return persistName(c.PersistMode) },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.PersistMode = s.PersistMode }},
	{"storage", false, never,
		func(c jetstream.StreamConfig) string { return c.Storage.String() },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Storage = s.Storage }},
	{"retention", false, never,
		func(c jetstream.StreamConfig) string { return c.Retention.String() },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Retention = s.Retention }},
	{"max age", true, func(h, w jetstream.StreamConfig) bool { return grows(h.MaxAge, w.MaxAge) },
		func(c jetstream.StreamConfig) string { return limit(c.MaxAge, time.Duration.String) },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.MaxAge = s.MaxAge }},
	{"max bytes", true, func(h, w jetstream.StreamConfig) bool { return grows(h.MaxBytes, w.MaxBytes) },
		func(c jetstream.StreamConfig) string {
			return limit(c.MaxBytes, func(v int64) string { return strconv.FormatInt(v, 10) })
		},
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.MaxBytes = s.MaxBytes }},
	{"subjects", true, always,
		func(c jetstream.StreamConfig) string { return strings.Join(c.Subjects, ",") },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Subjects = slices.Clone(s.Subjects) }},
	{"discard", true, always,
		func(c jetstream.StreamConfig) string { return c.Discard.String() },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Discard = s.Discard }},
	{"max message size", true, func(h, w jetstream.StreamConfig) bool { return grows(int64(h.MaxMsgSize), int64(w.MaxMsgSize)) },
		func(c jetstream.StreamConfig) string {
			return limit(c.MaxMsgSize, func(v int32) string { return strconv.FormatInt(int64(v), 10) })
		},
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.MaxMsgSize = s.MaxMsgSize }},
	{"duplicates window", true, always,
		func(c jetstream.StreamConfig) string { return c.Duplicates.String() },
		func(d *jetstream.StreamConfig, s jetstream.StreamConfig) { d.Duplicates = s.Duplicates }},
}

func persistName(m jetstream.PersistModeType) string {
	if m == jetstream.AsyncPersistMode {
		return "async"
	}
	return "default"
}

// streamPlan is what to do with one existing stream.
type streamPlan struct {
	update  jetstream.StreamConfig // the stream's config with the applied changes
	apply   []StreamChange         // changed by update
	keep    []StreamChange         // left as they are
	refused []StreamChange         // among apply: NATS cannot make them in place
}

// planStream compares an existing stream (have, as the server reports it)
// with the configuration (want). At start only the settings that are safe
// at start are applied; for a migration every difference is.
func planStream(have, want jetstream.StreamConfig, migrate bool) streamPlan {
	p := streamPlan{update: have}
	p.update.Subjects = slices.Clone(have.Subjects)
	for _, s := range streamSettings {
		h, w := s.show(have), s.show(want)
		if h == w {
			continue
		}
		c := StreamChange{Stream: have.Name, Setting: s.name, Have: h, Want: w}
		if !migrate && !s.atStart(have, want) {
			p.keep = append(p.keep, c)
			continue
		}
		p.apply = append(p.apply, c)
		s.set(&p.update, want)
		if !s.inPlace {
			p.refused = append(p.refused, c)
		}
	}
	return p
}

// keptAttrs are the slog attributes of the settings a start kept: the
// stream's value and the configured one, side by side.
func keptAttrs(stream string, kept []StreamChange) []any {
	args := []any{"stream", stream}
	for _, c := range kept {
		key := strings.ReplaceAll(c.Setting, " ", "_")
		args = append(args, key, c.Have, "configured_"+key, c.Want)
	}
	return args
}

// EnsureStreams creates the streams that are missing and the durable
// consumers; every gateway and executor calls it at start. An existing
// stream keeps its replicas, persist mode, storage and retention, and its
// limits where the configuration would lower them: each stream that
// differs gets one log line with both values (`testum migrate --streams`,
// MigrateStreams, changes them). Every stream is examined before any is
// touched.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig) error {
	if err := c.CheckAndSetDefaults(); err != nil {
		return err
	}
	names := streamConfigs(c, 1)
	have := make([]*jetstream.StreamConfig, len(names))
	missing := false
	for i, sc := range names {
		s, err := js.Stream(ctx, sc.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = true
		case err != nil:
			return fmt.Errorf("stream %s: %w", sc.Name, err)
		default:
			cfg := s.CachedInfo().Config
			have[i] = &cfg
		}
	}
	// The default replica count costs a probe, made only when it matters:
	// a stream is to be created, or one has fewer copies than the default
	// can ask for (the difference is then logged).
	replicas := c.Replicas
	if replicas == 0 {
		probe := missing
		for _, h := range have {
			probe = probe || (h != nil && h.Replicas < MaxDefaultReplicas)
		}
		if probe {
			var err error
			if replicas, err = Replicas(ctx, js, 0); err != nil {
				return err
			}
		}
	}
	wants := streamConfigs(c, max(replicas, 1))
	var plans []streamPlan
	for i, want := range wants {
		if have[i] == nil {
			continue
		}
		if replicas == 0 {
			// Not probed: the stream has as many copies as the default
			// could ask for.
			want = streamConfigs(c, max(have[i].Replicas, 1))[i]
		}
		p := planStream(*have[i], want, false)
		if len(p.keep) > 0 {
			c.Logger.Warn("stream settings differ from the configuration and are kept; testum migrate --streams changes them",
				keptAttrs(want.Name, p.keep)...)
		}
		plans = append(plans, p)
	}
	for _, p := range plans {
		if len(p.apply) == 0 {
			continue
		}
		if _, err := js.UpdateStream(ctx, p.update); err != nil {
			return fmt.Errorf("stream %s: updating %v: %w", p.update.Name, p.apply, err)
		}
	}
	for i, want := range wants {
		if have[i] != nil {
			continue
		}
		if _, err := js.CreateStream(ctx, want); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return fmt.Errorf("stream %s: %w", want.Name, err)
		}
		c.Logger.Info("stream created", "stream", want.Name, "replicas", want.Replicas)
	}
	return ensureConsumers(ctx, js, c)
}

// MigrateStreams brings every stream to the configuration, in both
// directions (replicas up or down, limits lower or higher), and creates
// what is missing; it returns the changes made. All or none: every change
// is checked before the first is made, and when one is impossible in
// place nothing is changed. recreateOutput allows the one such change
// testum can make itself: the output stream (a replayable copy of the
// transcripts; the log archive keeps every host's log) is deleted and
// created anew, e.g. for its persist mode, which NATS cannot change and
// which differs between 1 and more replicas. The work queues are never
// recreated.
func MigrateStreams(ctx context.Context, js jetstream.JetStream, c StreamsConfig, recreateOutput bool) ([]StreamChange, error) {
	if err := c.CheckAndSetDefaults(); err != nil {
		return nil, err
	}
	replicas, err := Replicas(ctx, js, c.Replicas)
	if err != nil {
		return nil, err
	}
	wants := streamConfigs(c, replicas)
	type step struct {
		want     jetstream.StreamConfig
		exists   bool
		recreate bool
		plan     streamPlan
	}
	var steps []step
	var refused []string
	for _, want := range wants {
		st := step{want: want}
		s, err := js.Stream(ctx, want.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
		case err != nil:
			return nil, fmt.Errorf("stream %s: %w", want.Name, err)
		default:
			st.exists = true
			st.plan = planStream(s.CachedInfo().Config, want, true)
			if len(st.plan.refused) > 0 {
				if want.Name == StreamOutput && recreateOutput {
					st.recreate = true
				} else {
					for _, r := range st.plan.refused {
						refused = append(refused, r.String())
					}
				}
			}
		}
		steps = append(steps, st)
	}
	if len(refused) > 0 {
		return nil, fmt.Errorf("nothing changed: NATS cannot change %s on an existing stream; "+
			"for %s, run again with --recreate-output (its live transcripts are dropped, the log archive keeps every log); "+
			"a work queue must be drained and deleted by hand (nats stream rm) while testum is stopped, then migrate creates it",
			strings.Join(refused, "; "), StreamOutput)
	}
	var done []StreamChange
	for _, st := range steps {
		switch {
		case !st.exists:
			if _, err := js.CreateStream(ctx, st.want); err != nil {
				return done, fmt.Errorf("stream %s: create: %w", st.want.Name, err)
			}
			done = append(done, StreamChange{Stream: st.want.Name, Setting: "created", Have: "none", Want: strconv.Itoa(st.want.Replicas) + " replicas"})
		case st.recreate:
			if err := js.DeleteStream(ctx, st.want.Name); err != nil {
				return done, fmt.Errorf("stream %s: delete to recreate: %w", st.want.Name, err)
			}
			if _, err := js.CreateStream(ctx, st.want); err != nil {
				return done, fmt.Errorf("stream %s: deleted but not created again (%w): run testum migrate --streams again", st.want.Name, err)
			}
			done = append(done, st.plan.apply...)
		case len(st.plan.apply) > 0:
			if _, err := js.UpdateStream(ctx, st.plan.update); err != nil {
				return done, fmt.Errorf("stream %s: NATS refused %v: %w; what was changed before is listed, run again once the cause is fixed", st.want.Name, st.plan.apply, err)
			}
			done = append(done, st.plan.apply...)
		}
	}
	if err := ensureConsumers(ctx, js, c); err != nil {
		return done, err
	}
	return done, nil
}
