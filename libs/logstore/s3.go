package logstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3PartSize is the multipart part size. minio-go buffers one part in memory
// when the size is unknown; its default for that case is hundreds of MiB.
// 8 MiB parts allow objects up to 80 GB (10,000 parts).
const s3PartSize = 8 << 20

// S3Config configures an S3 store. Its String, GoString, Format and LogValue
// methods redact SecretKey.
type S3Config struct {
	Endpoint  string // host:port, without scheme
	AccessKey string
	SecretKey string
	Bucket    string
	Region    string // optional
	Secure    bool   // HTTPS
}

// String describes the configuration without the secret key.
func (c S3Config) String() string {
	secret := "<empty>"
	if c.SecretKey != "" {
		secret = "<redacted>"
	}
	return fmt.Sprintf("logstore.S3Config{Endpoint:%q AccessKey:%q SecretKey:%s Bucket:%q Region:%q Secure:%t}",
		c.Endpoint, c.AccessKey, secret, c.Bucket, c.Region, c.Secure)
}

// GoString is the same as String.
func (c S3Config) GoString() string { return c.String() }

// Format implements fmt.Formatter: every verb prints String.
func (c S3Config) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, c.String()) }

// LogValue implements slog.LogValuer without the secret key.
func (c S3Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoint", c.Endpoint),
		slog.String("access_key", c.AccessKey),
		slog.String("bucket", c.Bucket),
		slog.String("region", c.Region),
		slog.Bool("secure", c.Secure),
	)
}

// S3 is a Store backed by a bucket of an S3-compatible server.
type S3 struct {
	client *minio.Client
	bucket string
	secret string // only used to redact errors
}

var _ Store = (*S3)(nil)

// NewS3 connects to the server and creates the bucket if it does not exist.
// Errors never contain the secret key.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("logstore: S3 endpoint and bucket are required")
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	s := &S3{client: client, bucket: cfg.Bucket, secret: cfg.SecretKey}
	if err != nil {
		return nil, s.errorf("connecting to %s", err, cfg.Endpoint)
	}
	ok, err := client.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, s.errorf("checking bucket %s at %s", err, cfg.Bucket, cfg.Endpoint)
	}
	if !ok {
		err := client.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region})
		if err != nil {
			code := minio.ToErrorResponse(err).Code
			if code != minio.BucketAlreadyOwnedByYou && code != minio.BucketAlreadyExists {
				return nil, s.errorf("creating bucket %s at %s", err, cfg.Bucket, cfg.Endpoint)
			}
		}
	}
	return s, nil
}

// Bucket is the bucket name.
func (s *S3) Bucket() string { return s.bucket }

// String describes the store without credentials.
func (s *S3) String() string {
	return "logstore.S3(" + s.client.EndpointURL().String() + "/" + s.bucket + ")"
}

// GoString is the same as String.
func (s *S3) GoString() string { return s.String() }

// Format implements fmt.Formatter: every verb prints String.
func (s *S3) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// Put implements Store. An unknown size (-1) is uploaded as a multipart
// upload in 8 MiB parts; the object appears only when the upload completes.
func (s *S3) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	if size < -1 {
		return fmt.Errorf("logstore: put %s: invalid size %d", key, size)
	}
	_, err := s.client.PutObject(ctx, s.bucket, key, r, size, minio.PutObjectOptions{
		ContentType: "text/plain; charset=utf-8",
		PartSize:    s3PartSize,
	})
	if err != nil {
		return s.errorf("put %s", err, key)
	}
	return nil
}

// Get implements Store.
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	obj, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, s.errorf("get %s", err, key)
	}
	// GetObject is lazy; Stat issues the request so that a missing key is
	// reported here rather than on the first Read.
	if _, err := obj.Stat(); err != nil {
		_ = obj.Close()
		return nil, s.errorf("get %s", err, key)
	}
	return obj, nil
}

// Stat implements Store.
func (s *S3) Stat(ctx context.Context, key string) (Info, error) {
	if err := ValidateKey(key); err != nil {
		return Info{}, err
	}
	oi, err := s.client.StatObject(ctx, s.bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return Info{}, s.errorf("stat %s", err, key)
	}
	return Info{Key: key, Size: oi.Size, Modified: oi.LastModified.UTC()}, nil
}

// Delete implements Store.
func (s *S3) Delete(ctx context.Context, key string) error {
	if err := ValidateKey(key); err != nil {
		return err
	}
	err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code != minio.NoSuchKey {
		return s.errorf("delete %s", err, key)
	}
	return nil
}

// List implements Store.
func (s *S3) List(ctx context.Context, prefix string) ([]Info, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine if we return early
	var out []Info
	for oi := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if oi.Err != nil {
			return nil, s.errorf("list %q", oi.Err, prefix)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue // directory marker written by another tool
		}
		out = append(out, Info{Key: oi.Key, Size: oi.Size, Modified: oi.LastModified.UTC()})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("logstore: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// errorf wraps err as "logstore: <what>: <err>", mapping missing keys to
// ErrNotFound and removing the secret key from the message should a server
// or library ever echo it.
func (s *S3) errorf(format string, err error, args ...any) error {
	what := fmt.Sprintf(format, args...)
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey:
		return fmt.Errorf("logstore: %s: %w", what, ErrNotFound)
	}
	if s.secret != "" && strings.Contains(err.Error(), s.secret) {
		return &redactedError{msg: "logstore: " + what + ": " + strings.ReplaceAll(err.Error(), s.secret, "<redacted>")}
	}
	return fmt.Errorf("logstore: %s: %w", what, err)
}

// redactedError carries a message from which a secret was removed; it does
// not unwrap to the original error, which still contains the secret.
type redactedError struct{ msg string }

func (e *redactedError) Error() string { return e.msg }
