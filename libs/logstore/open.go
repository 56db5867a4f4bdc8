package logstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"time"
)

// DefaultBucket is the bucket used when Config names none.
const DefaultBucket = "testum-logs"

// openTimeout bounds the bucket check Open performs at start-up.
const openTimeout = 30 * time.Second

// Config chooses a log store: S3 when S3.Endpoint is set, else files under
// DataDir/logs.
type Config struct {
	DataDir string
	// S3.Endpoint may be written as a URL ("https://host:9000"): its scheme
	// then sets Secure. An empty Bucket is DefaultBucket.
	S3 S3Config
}

// Open builds the Store c asks for.
func Open(c Config) (Store, error) {
	endpoint := strings.TrimSpace(c.S3.Endpoint)
	if endpoint == "" {
		if c.DataDir == "" {
			return nil, errors.New("logstore: neither an S3 endpoint nor a data directory is set")
		}
		return NewDisk(filepath.Join(c.DataDir, "logs"))
	}
	cfg := c.S3
	cfg.Bucket = strings.TrimSpace(cfg.Bucket)
	cfg.Region = strings.TrimSpace(cfg.Region)
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		endpoint, cfg.Secure = strings.TrimPrefix(endpoint, "https://"), true
	case strings.HasPrefix(endpoint, "http://"):
		endpoint, cfg.Secure = strings.TrimPrefix(endpoint, "http://"), false
	}
	cfg.Endpoint = strings.TrimSuffix(endpoint, "/")
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("logstore: an S3 endpoint is set but its access key or secret key is empty")
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	return NewS3(ctx, cfg)
}
