package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultNATSBucket is the object store bucket used when NATSConfig names
// none.
const DefaultNATSBucket = "TESTUM_LOGS"

// natsReadLimit bounds a Get whose context has no deadline: nats.go would
// otherwise end the whole read after its default API timeout (5 s), which a
// large log sent to a slow client outlasts.
const natsReadLimit = time.Hour

// A lookup (an object's description, the consumer that reads its chunks)
// is a request whose answer can be lost: one sent to a server as it dies,
// or while the bucket or the cluster elects a leader, is never answered,
// and the read's context, long enough for a download, would hold it that
// long. So each attempt gets natsRequestTimeout (nats.go's own API
// timeout), and attempts that found no answer are retried until
// natsLookupLimit, long past a leader election.
const (
	natsRequestTimeout = 5 * time.Second
	natsLookupLimit    = 45 * time.Second
	natsRetryWait      = 250 * time.Millisecond
)

// NATSConfig configures a NATS store.
type NATSConfig struct {
	Bucket string // DefaultNATSBucket when empty
	// Replicas is used only when the bucket is created: an existing bucket
	// is kept as it is (NATS.Replicas reports what it has).
	Replicas int
}

// NATS is a Store kept in a JetStream object store on the NATS that the
// roles already share, so that every gateway reads what any executor wrote.
// The object store splits each object into chunks (128 KiB) and publishes its
// description last: readers see the old object or the new, never a part.
type NATS struct {
	obs    jetstream.ObjectStore
	bucket string
}

var _ Store = (*NATS)(nil)

// NewNATS opens the bucket, creating it (file storage, cfg.Replicas) if it
// does not exist. Like a lookup, each request is retried while it finds no
// answer (a cluster that is still electing its leaders, a node that died):
// creating is idempotent, and a bucket another process made meanwhile is
// opened.
func NewNATS(ctx context.Context, js jetstream.JetStream, cfg NATSConfig) (*NATS, error) {
	bucket := cfg.Bucket
	if bucket == "" {
		bucket = DefaultNATSBucket
	}
	var obs jetstream.ObjectStore
	cancel, err := lookup(ctx, func(ctx context.Context) error {
		var err error
		obs, err = js.ObjectStore(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			obs, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
				Bucket:      bucket,
				Description: "testum: the full log of every run host",
				Storage:     jetstream.FileStorage,
				Replicas:    cfg.Replicas,
			})
			if errors.Is(err, jetstream.ErrBucketExists) { // another process was faster
				obs, err = js.ObjectStore(ctx, bucket)
			}
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("logstore: object store %s: %w", bucket, err)
	}
	cancel()
	return &NATS{obs: obs, bucket: bucket}, nil
}

// Bucket is the object store bucket name.
func (s *NATS) Bucket() string { return s.bucket }

// String describes the store.
func (s *NATS) String() string { return "logstore.NATS(" + s.bucket + ")" }

// Replicas is the number of replicas the bucket has.
func (s *NATS) Replicas(ctx context.Context) (int, error) {
	st, err := s.obs.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("logstore: object store %s: %w", s.bucket, err)
	}
	return st.Replicas(), nil
}

// NATSBucketReplicas is the number of replicas of the object store bucket
// (DefaultNATSBucket when empty); found is false when it does not exist.
func NATSBucketReplicas(ctx context.Context, js jetstream.JetStream, bucket string) (replicas int, found bool, err error) {
	if bucket == "" {
		bucket = DefaultNATSBucket
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("logstore: object store %s: %w", bucket, err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		return 0, false, fmt.Errorf("logstore: object store %s: %w", bucket, err)
	}
	return st.Replicas(), true, nil
}

// SetNATSBucketReplicas changes the replicas of an existing object store
// bucket (DefaultNATSBucket when empty) in place. Only the replicas change:
// the update starts from the bucket's own stream configuration, so that
// limits, placement or a description an operator set are kept, and the
// objects stay where they are while NATS adds or removes copies.
func SetNATSBucketReplicas(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) error {
	if bucket == "" {
		bucket = DefaultNATSBucket
	}
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		return fmt.Errorf("logstore: object store %s: %w", bucket, err)
	}
	st, err := obs.Status(ctx)
	if err != nil {
		return fmt.Errorf("logstore: object store %s: %w", bucket, err)
	}
	bs, ok := st.(*jetstream.ObjectBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return fmt.Errorf("logstore: object store %s: its status (%T) names no stream", bucket, st)
	}
	info := bs.StreamInfo()
	cfg := info.Config
	cfg.Replicas = replicas
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("logstore: object store %s: replicas %d → %d: %w", bucket, info.Config.Replicas, replicas, err)
	}
	return nil
}

// Put implements Store. A reader that fails, or whose length is not size,
// leaves the previous object in place: the object store removes the chunks
// sent so far and never publishes the new description.
func (s *NATS) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("logstore: put %s: invalid size %d", key, size)
	}
	src := io.Reader(&ctxReader{ctx: ctx, r: r})
	if size >= 0 {
		src = &exactReader{r: io.LimitReader(src, size+1), want: size}
	}
	if _, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: key}, src); err != nil {
		return fmt.Errorf("logstore: put %s: %w", key, err)
	}
	return nil
}

// Get implements Store.
func (s *NATS) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	readCancel := context.CancelFunc(func() {})
	if _, ok := ctx.Deadline(); !ok {
		ctx, readCancel = context.WithTimeout(ctx, natsReadLimit)
	}
	var res jetstream.ObjectResult
	cancel, err := lookup(ctx, func(ctx context.Context) error {
		if res != nil { // a lookup answered too late: its context is gone
			_ = res.Close()
			res = nil
		}
		var err error
		res, err = s.obs.Get(ctx, key)
		return err
	})
	if err != nil {
		if res != nil {
			_ = res.Close()
		}
		readCancel()
		return nil, s.wrap("get", key, err)
	}
	return &natsObject{ObjectResult: res, cancel: func() { cancel(); readCancel() }}, nil
}

// Stat implements Store.
func (s *NATS) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	var oi *jetstream.ObjectInfo
	cancel, err := lookup(ctx, func(ctx context.Context) error {
		var err error
		oi, err = s.obs.GetInfo(ctx, key)
		return err
	})
	if err != nil {
		return Info{}, s.wrap("stat", key, err)
	}
	cancel()
	return natsInfo(oi), nil
}

// lookup runs op, each attempt with a context derived from ctx that ends
// natsRequestTimeout after the attempt started unless op returned by then,
// and tries again while attempts find no answer, until natsLookupLimit.
// After success the context of the attempt that succeeded lives on (a Get
// reads its chunks with it) until cancel is called.
func lookup(ctx context.Context, op func(ctx context.Context) error) (cancel context.CancelFunc, err error) {
	deadline := time.Now().Add(natsLookupLimit)
	for {
		actx, acancel := context.WithCancel(ctx)
		timer := time.AfterFunc(natsRequestTimeout, acancel)
		err := op(actx)
		late := !timer.Stop()
		if err == nil && !late {
			return acancel, nil
		}
		acancel()
		if late {
			err = fmt.Errorf("no answer within %s: %w", natsRequestTimeout, errors.Join(errNoAnswer, err))
		}
		if ctx.Err() != nil || !unanswered(err) || time.Now().After(deadline) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(natsRetryWait):
		}
	}
}

// errNoAnswer marks an attempt that lookup ended.
var errNoAnswer = errors.New("no answer")

// unanswered reports whether err says that a request found no one to
// answer it, or no answer in time, rather than an answer (not found, bad
// metadata): only such requests are worth sending again.
func unanswered(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, errNoAnswer), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503 // e.g. JetStream temporarily unavailable during an election
	}
	return false
}

// Delete implements Store.
func (s *NATS) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if _, err := s.obs.GetInfo(ctx, key); errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil // also when deleted before: a second delete marker is no use
	}
	err := s.obs.Delete(ctx, key)
	if err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("logstore: delete %s: %w", key, err)
	}
	return nil
}

// List implements Store. The object store lists every object of the bucket;
// the prefix is applied here.
func (s *NATS) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	all, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("logstore: list %q: %w", prefix, err)
	}
	var out []Info
	for _, oi := range all {
		if !oi.Deleted && strings.HasPrefix(oi.Name, prefix) {
			out = append(out, natsInfo(oi))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

func natsInfo(oi *jetstream.ObjectInfo) Info {
	return Info{Key: oi.Name, Size: int64(oi.Size), Modified: oi.ModTime.UTC()}
}

func (s *NATS) wrap(op, key string, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("logstore: %s %s: %w", op, key, ErrNotFound)
	}
	return fmt.Errorf("logstore: %s %s: %w", op, key, err)
}

// natsObject ends the read's own deadline when it is closed.
type natsObject struct {
	jetstream.ObjectResult
	cancel context.CancelFunc
}

func (o *natsObject) Close() error {
	err := o.ObjectResult.Close()
	o.cancel()
	return err
}

// exactReader fails the read that ends a reader whose length is not want,
// so that a short or long reader never becomes an object.
type exactReader struct {
	r    io.Reader
	want int64
	n    int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.n += int64(n)
	if e.n > e.want {
		return 0, fmt.Errorf("size mismatch: announced %d bytes, reader gave more", e.want)
	}
	if errors.Is(err, io.EOF) && e.n != e.want {
		return 0, fmt.Errorf("size mismatch: announced %d bytes, reader gave %d", e.want, e.n)
	}
	return n, err
}
