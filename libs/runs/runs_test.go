package runs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/testum/testum/libs/auth"
	"github.com/testum/testum/libs/store"
	"github.com/testum/testum/libs/testum"
)

// fakeStore holds platforms and runs in memory; it is its own Tx.
type fakeStore struct {
	platforms []testum.Platform
	runs      map[uuid.UUID]testum.Run
	hosts     map[uuid.UUID][]testum.RunHost
	secretEnv map[uuid.UUID]map[string]string
	created   []store.NewRun
	audit     []testum.AuditEntry
}

func newFakeStore(names ...string) *fakeStore {
	f := &fakeStore{runs: map[uuid.UUID]testum.Run{}, hosts: map[uuid.UUID][]testum.RunHost{}, secretEnv: map[uuid.UUID]map[string]string{}}
	for i, n := range names {
		role := "db"
		if strings.HasPrefix(n, "web") {
			role = "web"
		}
		f.platforms = append(f.platforms, testum.Platform{ID: int64(i + 1), Name: n, Host: "10.0.0." + n[len(n)-1:], Port: 22,
			Labels: map[string]string{"role": role}})
	}
	return f
}

func (f *fakeStore) InTx(ctx context.Context, fn func(tx Tx) error) error { return fn(f) }

func (f *fakeStore) Run(_ context.Context, id uuid.UUID) (testum.Run, error) {
	r, ok := f.runs[id]
	if !ok {
		return r, testum.NotFound("run %s not found", id)
	}
	return r, nil
}

func (f *fakeStore) RunHosts(_ context.Context, id uuid.UUID) ([]testum.RunHost, error) {
	return f.hosts[id], nil
}

func (f *fakeStore) RunSecretEnv(_ context.Context, id uuid.UUID) (map[string]string, error) {
	return f.secretEnv[id], nil
}

func (f *fakeStore) PlatformsByIDs(_ context.Context, ids []int64) ([]testum.Platform, error) {
	var out []testum.Platform
	for _, p := range f.platforms {
		if slices.Contains(ids, p.ID) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeStore) PlatformsMatching(_ context.Context, sel map[string]string, limit int) ([]testum.Platform, error) {
	var out []testum.Platform
	for _, p := range f.platforms {
		ok := true
		for k, v := range sel {
			ok = ok && p.Labels[k] == v
		}
		if ok && len(out) < limit {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeStore) PlatformNames(context.Context) (map[string]int64, []string, error) {
	byName := map[string]int64{}
	var names []string
	for _, p := range f.platforms {
		byName[p.Name] = p.ID
		names = append(names, p.Name)
	}
	return byName, names, nil
}

func (f *fakeStore) RunCreate(_ context.Context, nr store.NewRun) (testum.Run, error) {
	f.created = append(f.created, nr)
	r := testum.Run{ID: nr.ID, State: testum.RunQueued, Kind: nr.Kind, Command: nr.Command, Spec: nr.Spec,
		HostCount: len(nr.Hosts), CreatedBy: nr.CreatedBy, ParentRunID: nr.ParentRunID}
	f.runs[nr.ID] = r
	return r, nil
}

func (f *fakeStore) RunRequestCancel(_ context.Context, id uuid.UUID) (testum.Run, error) {
	r := f.runs[id]
	r.CancelRequested = true
	f.runs[id] = r
	return r, nil
}

func (f *fakeStore) Audit(_ context.Context, e testum.AuditEntry) error {
	f.audit = append(f.audit, e)
	return nil
}

// fakePublisher records what was published; fail makes every publish fail.
type fakePublisher struct {
	accepted, canceled, woken []uuid.UUID
	fail                      bool
}

func (p *fakePublisher) RunAccepted(_ context.Context, id uuid.UUID) error {
	p.accepted = append(p.accepted, id)
	return p.err()
}

func (p *fakePublisher) RunCancel(_ context.Context, id uuid.UUID) error {
	p.canceled = append(p.canceled, id)
	return p.err()
}

func (p *fakePublisher) RunWake(_ context.Context, id uuid.UUID) error {
	p.woken = append(p.woken, id)
	return p.err()
}

func (p *fakePublisher) err() error {
	if p.fail {
		return errors.New("nats down")
	}
	return nil
}

func newService(t *testing.T, st *fakeStore, pub *fakePublisher) *Service {
	t.Helper()
	s, err := New(Config{}, st, pub)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

var alice = auth.Actor{UserID: 7, Username: "alice", Role: auth.RoleAdmin, IP: "192.0.2.1"}

func TestSpec(t *testing.T) {
	s := newService(t, newFakeStore(), &fakePublisher{})
	for _, tc := range []struct {
		name    string
		req     Request
		wantErr string // substring; "" for valid
		check   func(t *testing.T, spec testum.RunSpec)
	}{
		{name: "defaults", req: Request{Command: "uptime"}, check: func(t *testing.T, spec testum.RunSpec) {
			if spec.TimeoutSeconds != 600 || spec.Parallelism != 256 || spec.Batch != "" || spec.MaxFailures != "" {
				t.Errorf("defaults: %+v", spec)
			}
		}},
		{name: "no command", req: Request{Command: "  "}, wantErr: "command is required"},
		{name: "command and script", req: Request{Command: "x", Script: &testum.Script{Body: "y"}}, wantErr: "not both"},
		{name: "long command", req: Request{Command: strings.Repeat("x", MaxCommandBytes+1)}, wantErr: "send a script instead"},
		{name: "NUL", req: Request{Command: "a\x00b"}, wantErr: "NUL"},
		{name: "script interpreter defaults to sh", req: Request{Script: &testum.Script{Interpreter: " ", Body: "echo"}},
			check: func(t *testing.T, spec testum.RunSpec) {
				if spec.Script == nil || spec.Script.Interpreter != "sh" || spec.Command != "" {
					t.Errorf("script: %+v", spec.Script)
				}
			}},
		{name: "zero timeout", req: Request{Command: "x", Timeout: ptr(0)}, wantErr: "timeout 0: want a positive"},
		{name: "huge timeout", req: Request{Command: "x", Timeout: ptr(8 * 24 * 3600)}, wantErr: "at most 604800 seconds"},
		{name: "parallelism", req: Request{Command: "x", Parallelism: ptr(0)}, wantErr: "parallelism 0: want 1 to 100000"},
		{name: "deadline", req: Request{Command: "x", Deadline: ptr(-1)}, wantErr: "deadline -1"},
		{name: "batch percent", req: Request{Command: "x", Batch: ptr(" 25% "), MaxFailures: ptr("0")},
			check: func(t *testing.T, spec testum.RunSpec) {
				if spec.Batch != "25%" || spec.MaxFailures != "0" {
					t.Errorf("amounts: %q %q", spec.Batch, spec.MaxFailures)
				}
			}},
		{name: "batch zero", req: Request{Command: "x", Batch: ptr("0")}, wantErr: "batch 0: must be at least 1"},
		{name: "batch zero percent", req: Request{Command: "x", Batch: ptr("0%")}, wantErr: "batch 0%: must be at least 1"},
		{name: "batch empty", req: Request{Command: "x", Batch: ptr("")}, wantErr: "batch:"},
		{name: "max_failures garbage", req: Request{Command: "x", MaxFailures: ptr("many")}, wantErr: "max_failures:"},
		{name: "env split", req: Request{Command: "x", Env: map[string]EnvValue{"A": {Value: "1"}, "TOKEN": {Value: "s3", Secret: true}, "KEY": {Value: "k", Secret: true}}},
			check: func(t *testing.T, spec testum.RunSpec) {
				if !maps.Equal(spec.Env, map[string]string{"A": "1"}) || !maps.Equal(spec.SecretEnv, map[string]string{"TOKEN": "s3", "KEY": "k"}) ||
					!slices.Equal(spec.SecretEnvNames, []string{"KEY", "TOKEN"}) {
					t.Errorf("env: %v %v %v", spec.Env, spec.SecretEnv, spec.SecretEnvNames)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec, err := s.Spec(tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || testum.CodeOf(err) != testum.CodeInvalid {
					t.Fatalf("err = %v, want an invalid error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.check != nil {
				tc.check(t, spec)
			}
		})
	}
}

func TestPreview(t *testing.T) {
	st := newFakeStore("web1", "web2", "web3", "db1", "db2")
	s := newService(t, st, &fakePublisher{})
	for _, tc := range []struct {
		name       string
		targets    Targets
		want       []string
		wantErr    string
		wantReason string
	}{
		{name: "empty", wantErr: "targets are empty"},
		{name: "ids in order", targets: Targets{PlatformIDs: []int64{4, 1}}, want: []string{"db1", "web1"}},
		{name: "unknown ids", targets: Targets{PlatformIDs: []int64{1, 98, 99}}, wantErr: "unknown platform id(s): 98, 99"},
		{name: "labels", targets: Targets{Labels: "role=db"}, want: []string{"db1", "db2"}},
		{name: "labels matching nothing", targets: Targets{Labels: "role=mail"}, wantErr: "no platform has the labels role=mail"},
		{name: "bad label", targets: Targets{Labels: "role"}, wantErr: `label "role": want key=value`},
		{name: "hosts", targets: Targets{Hosts: "web[1-3],!web2"}, want: []string{"web1", "web3"}},
		{name: "unknown host", targets: Targets{Hosts: "web[1-4]"}, wantErr: "hosts: no platform named web4"},
		{name: "union without repeats", targets: Targets{PlatformIDs: []int64{2}, Labels: "role=web", Hosts: "db1,web2"},
			want: []string{"web2", "web1", "web3", "db1"}},
		{name: "expression too long", targets: Targets{Hosts: strings.Repeat("a", 1<<20)}, wantReason: "hosts_too_complex"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Preview(context.Background(), tc.targets)
			if tc.wantErr != "" || tc.wantReason != "" {
				var te *testum.Error
				if !errors.As(err, &te) || te.Code != testum.CodeInvalid || !strings.Contains(te.Message, tc.wantErr) || te.Reason != tc.wantReason {
					t.Fatalf("err = %#v, want invalid %q (reason %q)", err, tc.wantErr, tc.wantReason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("hosts = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCreate(t *testing.T) {
	st := newFakeStore("web1", "web2")
	pub := &fakePublisher{fail: true}
	s := newService(t, st, pub)
	run, err := s.Create(context.Background(), alice, Request{Script: &testum.Script{Interpreter: "bash", Body: "echo hi\necho there"},
		Targets: Targets{Labels: "role=web"}})
	if err != nil {
		t.Fatal(err) // a publish that fails does not fail the run: the reaper publishes it
	}
	if len(st.created) != 1 || run.HostCount != 2 || !slices.Equal(pub.accepted, []uuid.UUID{run.ID}) {
		t.Fatalf("created %d runs of %d hosts, published %v", len(st.created), run.HostCount, pub.accepted)
	}
	nr := st.created[0]
	if nr.Kind != "script" || nr.Command != "[bash script] echo hi" || *nr.CreatedBy != 7 || nr.CreatedByName != "alice" ||
		nr.Hosts[1].Address != "10.0.0.2:22" || nr.Targets["labels"] != "role=web" {
		t.Errorf("stored run: %+v", nr)
	}
	if len(st.audit) != 1 || st.audit[0].Action != "run.create" || st.audit[0].Target != "run:"+run.ID.String() ||
		*st.audit[0].ActorID != 7 || st.audit[0].IP != "192.0.2.1" {
		t.Errorf("audit: %+v", st.audit)
	}
}

func TestRerun(t *testing.T) {
	st := newFakeStore("web1", "web2", "web3")
	pub := &fakePublisher{}
	s := newService(t, st, pub)
	old := testum.Run{ID: uuid.New(), State: testum.RunFailed, Spec: testum.RunSpec{Command: "deploy", Dir: "/srv", Sudo: true,
		TimeoutSeconds: 30, Parallelism: 2, Batch: "50%", MaxFailures: "1", DeadlineSecs: 90, RetryLost: true,
		Env: map[string]string{"A": "1"}, SecretEnvNames: []string{"TOKEN"}}}
	st.runs[old.ID] = old
	st.secretEnv[old.ID] = map[string]string{"TOKEN": "s3cret"}
	st.hosts[old.ID] = []testum.RunHost{
		{PlatformID: ptr[int64](1), State: testum.HostOK},
		{PlatformID: ptr[int64](2), State: testum.HostFailed},
		{PlatformID: nil, State: testum.HostFailed}, // its platform is gone
		{PlatformID: ptr[int64](3), State: testum.HostLost},
	}
	ctx := context.Background()

	if _, err := s.Rerun(ctx, alice, old.ID, "some"); testum.CodeOf(err) != testum.CodeInvalid {
		t.Fatalf("only=some: %v", err)
	}
	run, err := s.Rerun(ctx, alice, old.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	nr := st.created[0]
	if ids := []int64{nr.Hosts[0].PlatformID, nr.Hosts[1].PlatformID}; len(nr.Hosts) != 2 || !slices.Equal(ids, []int64{2, 3}) {
		t.Errorf("failed hosts re-run: %+v", nr.Hosts)
	}
	if *nr.ParentRunID != old.ID || run.ParentRunID == nil {
		t.Errorf("parent: %v", nr.ParentRunID)
	}
	want := old.Spec
	want.SecretEnv = map[string]string{"TOKEN": "s3cret"}
	got := nr.Spec
	if got.Command != want.Command || got.Dir != want.Dir || !got.Sudo || got.TimeoutSeconds != 30 || got.Parallelism != 2 ||
		got.Batch != "50%" || got.MaxFailures != "1" || got.DeadlineSecs != 90 || !got.RetryLost ||
		!maps.Equal(got.Env, want.Env) || !maps.Equal(got.SecretEnv, want.SecretEnv) || !slices.Equal(got.SecretEnvNames, want.SecretEnvNames) {
		t.Errorf("spec = %+v, want %+v", got, want)
	}

	if _, err := s.Rerun(ctx, alice, old.ID, RerunAll); err != nil || len(st.created[1].Hosts) != 3 {
		t.Errorf("only=all: %v, %d hosts", err, len(st.created[1].Hosts))
	}

	allOK := testum.Run{ID: uuid.New(), State: testum.RunSucceeded, Spec: testum.RunSpec{Command: "x"}}
	st.runs[allOK.ID] = allOK
	st.hosts[allOK.ID] = []testum.RunHost{{PlatformID: ptr[int64](1), State: testum.HostOK}}
	if _, err := s.Rerun(ctx, alice, allOK.ID, RerunFailed); err == nil || !strings.Contains(err.Error(), "nothing to re-run") {
		t.Errorf("all ok: %v", err)
	}
	if _, err := s.Rerun(ctx, alice, uuid.New(), ""); testum.CodeOf(err) != testum.CodeNotFound {
		t.Errorf("unknown run: %v", err)
	}
}

func TestCancel(t *testing.T) {
	ctx := context.Background()
	mine := ptr[int64](7)
	for _, tc := range []struct {
		name      string
		by        auth.Actor
		run       testum.Run
		wantCode  testum.Code
		published bool
	}{
		{name: "own run", by: alice, run: testum.Run{State: testum.RunRunning, CreatedBy: mine}, published: true},
		{name: "another's run", by: alice, run: testum.Run{State: testum.RunRunning, CreatedBy: ptr[int64](8)}, wantCode: testum.CodeForbidden},
		{name: "a run of no one", by: alice, run: testum.Run{State: testum.RunRunning}, wantCode: testum.CodeForbidden},
		{name: "extended_admin cancels any", by: auth.Actor{UserID: 9, Role: auth.RoleExtendedAdmin},
			run: testum.Run{State: testum.RunQueued, CreatedBy: ptr[int64](8)}, published: true},
		{name: "finished", by: alice, run: testum.Run{State: testum.RunSucceeded, CreatedBy: mine}},
		{name: "already asked", by: alice, run: testum.Run{State: testum.RunRunning, CreatedBy: mine, CancelRequested: true}, published: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, pub := newFakeStore(), &fakePublisher{}
			s := newService(t, st, pub)
			tc.run.ID = uuid.New()
			st.runs[tc.run.ID] = tc.run
			run, err := s.Cancel(ctx, tc.by, tc.run.ID)
			if tc.wantCode != "" {
				if testum.CodeOf(err) != tc.wantCode {
					t.Fatalf("err = %v, want %s", err, tc.wantCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := len(pub.canceled) == 1 && len(pub.woken) == 1; got != tc.published {
				t.Errorf("published cancel %v wake %v, want published %v", pub.canceled, pub.woken, tc.published)
			}
			newRequest := !tc.run.State.Final() && !tc.run.CancelRequested
			if newRequest != (len(st.audit) == 1) || (newRequest && !run.CancelRequested) {
				t.Errorf("audit %v, run %+v", st.audit, run)
			}
		})
	}
}
