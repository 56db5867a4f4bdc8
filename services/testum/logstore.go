package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/testum/testum/libs/bus"
	"github.com/testum/testum/libs/logstore"
)

// The log stores TESTUM_LOG_STORE chooses from.
const (
	logStoreDisk = "disk"
	logStoreS3   = "s3"
	logStoreNATS = "nats"
)

// logStoreKind is where this command archives host logs: TESTUM_LOG_STORE
// when set, else S3 when MINIO_ENDPOINT is set, else the data dir for serve
// (the one process that writes the logs also serves them) and the JetStream
// object store for the split roles, the one store they already share.
func (c *Config) logStoreKind() string {
	switch {
	case c.LogStore != "":
		return c.LogStore
	case strings.TrimSpace(c.MinIOEndpoint) != "":
		return logStoreS3
	case c.command == "serve":
		return logStoreDisk
	}
	return logStoreNATS
}

// logDir is the directory of the disk log store.
func (c *Config) logDir() string {
	if c.LogDir != "" {
		return c.LogDir
	}
	return filepath.Join(c.DataDir, "logs")
}

// checkLogStore refuses a log store setting that cannot work, and an
// executor that would archive logs on a disk no gateway reads: better not
// to start than to run commands whose logs are lost.
func (c *Config) checkLogStore() error {
	switch c.LogStore {
	case "", logStoreDisk, logStoreS3, logStoreNATS:
	default:
		return fmt.Errorf("TESTUM_LOG_STORE=%q: want disk, s3 or nats", c.LogStore)
	}
	kind := c.logStoreKind()
	if kind == logStoreS3 && strings.TrimSpace(c.MinIOEndpoint) == "" {
		return errors.New("TESTUM_LOG_STORE=s3 needs MINIO_ENDPOINT, MINIO_ACCESS_KEY and MINIO_SECRET_KEY")
	}
	if c.command == "executor" && kind == logStoreDisk && !c.LogDirShared {
		return fmt.Errorf("testum executor would keep logs in %s, where no gateway reads them: "+
			"use TESTUM_LOG_STORE=nats or MinIO (MINIO_ENDPOINT), or set TESTUM_LOG_DIR_SHARED=true "+
			"if that directory is a mount every gateway reads", c.logDir())
	}
	return nil
}

// openLogStore opens the log store logStoreKind names; the NATS store uses
// nc, the connection the streams are on.
func openLogStore(ctx context.Context, c *Config, nc *nats.Conn, log *slog.Logger) (logstore.Store, error) {
	kind := c.logStoreKind()
	switch kind {
	case logStoreS3:
		return logstore.Open(c.logsConfig())
	case logStoreDisk:
		if c.command == "gateway" && !c.LogDirShared {
			log.Warn("this gateway reads logs only from its own disk: executors elsewhere keep theirs in NATS or MinIO",
				"dir", c.logDir(), "hint", "TESTUM_LOG_DIR_SHARED=true if it is a shared mount")
		}
		return logstore.NewDisk(c.logDir())
	}
	if nc == nil {
		return nil, errors.New("TESTUM_LOG_STORE=nats needs a NATS connection")
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Replicated like the streams: as configured, else min(3, JetStream
	// servers). The default costs a probe, made only to create the bucket.
	want := c.StreamReplicas
	if want == 0 {
		if _, err := js.ObjectStore(octx, logstore.DefaultNATSBucket); errors.Is(err, jetstream.ErrBucketNotFound) {
			if want, err = bus.Replicas(octx, js, 0); err != nil {
				return nil, err
			}
		}
	}
	s, err := logstore.NewNATS(octx, js, logstore.NATSConfig{Replicas: want})
	if err != nil {
		return nil, err
	}
	if have, err := s.Replicas(octx); err != nil {
		return nil, err
	} else if c.StreamReplicas > 0 && have != c.StreamReplicas {
		// Like the streams, an existing bucket is never changed by a
		// process that merely starts.
		log.Warn("the log bucket keeps its replicas; testum migrate --streams changes them", "bucket", s.Bucket(), "replicas", have, "configured_replicas", c.StreamReplicas)
	}
	log.Info("logs are archived in the NATS object store", "bucket", s.Bucket())
	return s, nil
}
