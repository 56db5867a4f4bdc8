// Command testum runs testum: everything in one process (serve), or one role
// (gateway, executor) of a scaled-out deployment, plus operator commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "testum:", err)
		}
		os.Exit(1)
	}
}

// errUsage means the usage text was already printed.
var errUsage = errors.New("usage")

const usage = `testum — agentless remote execution over SSH

Usage:
  testum serve      everything in one process: gateway, executor, embedded NATS
                    and (without DATABASE_URL) a private PostgreSQL
  testum gateway    the HTTP API, console and WebSockets (needs NATS_URL, DATABASE_URL)
  testum executor   runs host tasks over SSH (needs NATS_URL, DATABASE_URL)
  testum migrate    applies the database migrations; with --streams, brings the
                    JetStream streams (and the log bucket's replicas) to the
                    configured replicas and limits
  testum secrets    generate a FERNET_KEY, or rotate: re-encrypt credentials with the newest key
  testum user       list, create, delete users or reset a master key (testum user --help)
  testum version    prints the version

Run "testum <command> --help" for the settings of a command.
`

// run is the whole program, testable without a process.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return cmdServe(ctx, rest, getenv, stdout, stderr)
	case "gateway":
		return cmdGateway(ctx, rest, getenv, stdout, stderr)
	case "executor":
		return cmdExecutor(ctx, rest, getenv, stdout, stderr)
	case "migrate":
		return cmdMigrate(ctx, rest, getenv, stdout, stderr)
	case "secrets":
		return cmdSecrets(ctx, rest, getenv, stdout, stderr)
	case "user":
		return cmdUser(ctx, rest, getenv, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "testum", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
