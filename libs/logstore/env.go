package logstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultBucket is the bucket used when MINIO_BUCKET is not set.
const DefaultBucket = "testum-logs"

// fromEnvTimeout bounds the bucket check FromEnv performs at start-up.
const fromEnvTimeout = 30 * time.Second

// FromEnv builds the Store the environment asks for. If MINIO_ENDPOINT is set
// it returns an S3 store configured by MINIO_ACCESS_KEY, MINIO_SECRET_KEY,
// MINIO_BUCKET (default "testum-logs"), MINIO_SECURE ("true"/"false", default
// false) and MINIO_REGION; an endpoint written as a URL ("https://host:9000")
// also sets Secure from its scheme. Otherwise it returns NewDisk(dataDir/logs).
func FromEnv(getenv func(string) string, dataDir string) (Store, error) {
	endpoint := strings.TrimSpace(getenv("MINIO_ENDPOINT"))
	if endpoint == "" {
		if dataDir == "" {
			return nil, errors.New("logstore: neither MINIO_ENDPOINT nor a data directory is set")
		}
		return NewDisk(filepath.Join(dataDir, "logs"))
	}
	cfg := S3Config{
		Endpoint:  endpoint,
		AccessKey: getenv("MINIO_ACCESS_KEY"),
		SecretKey: getenv("MINIO_SECRET_KEY"),
		Bucket:    strings.TrimSpace(getenv("MINIO_BUCKET")),
		Region:    strings.TrimSpace(getenv("MINIO_REGION")),
	}
	if cfg.Bucket == "" {
		cfg.Bucket = DefaultBucket
	}
	if v := strings.TrimSpace(getenv("MINIO_SECURE")); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("logstore: MINIO_SECURE=%q: want true or false", v)
		}
		cfg.Secure = b
	}
	switch {
	case strings.HasPrefix(endpoint, "https://"):
		cfg.Endpoint, cfg.Secure = strings.TrimPrefix(endpoint, "https://"), true
	case strings.HasPrefix(endpoint, "http://"):
		cfg.Endpoint, cfg.Secure = strings.TrimPrefix(endpoint, "http://"), false
	}
	cfg.Endpoint = strings.TrimSuffix(cfg.Endpoint, "/")
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return nil, errors.New("logstore: MINIO_ENDPOINT is set but MINIO_ACCESS_KEY or MINIO_SECRET_KEY is empty")
	}
	ctx, cancel := context.WithTimeout(context.Background(), fromEnvTimeout)
	defer cancel()
	return NewS3(ctx, cfg)
}
