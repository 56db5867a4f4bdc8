package executor

import (
	"context"
	"log/slog"
	"time"

	retry "github.com/sethvargo/go-retry"
)

// Every wait between tries in the executor comes from one of these
// policies: exponential, with jitter so executors that lost the same
// dependency do not come back in step, and capped.

// dependencyBackoff paces tries against PostgreSQL, JetStream consumers and
// pull requests: a restart of either must not lose a result or stop work.
func dependencyBackoff() retry.Backoff {
	return jittered(100*time.Millisecond, 5*time.Second)
}

// publishBackoff paces one transcript message's publishes and gives up
// after publishGiveUp.
func publishBackoff() retry.Backoff {
	return retry.WithMaxDuration(publishGiveUp, jittered(50*time.Millisecond, 2*time.Second))
}

// dialRetryBackoff paces the dials of a host that shed the handshake: the
// wide jitter spreads the hosts of one overloaded sshd apart again.
func dialRetryBackoff() retry.Backoff {
	return retry.WithCappedDuration(2*time.Second, retry.WithJitterPercent(50, retry.NewExponential(dialRetryBase)))
}

func jittered(base, most time.Duration) retry.Backoff {
	return retry.WithCappedDuration(most, retry.WithJitterPercent(20, retry.NewExponential(base)))
}

// retryUntil calls fn, each try bounded by perTry, until it succeeds, b
// stops, or ctx ends. It returns fn's last error rather than ctx's, so the
// caller sees what failed. Every tenth failure is logged.
func retryUntil(ctx context.Context, b retry.Backoff, perTry time.Duration, log *slog.Logger, what string,
	fn func(context.Context) error) error {
	var last error
	tries := 0
	err := retry.Do(ctx, b, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, perTry)
		last = fn(cctx)
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return last // not retryable: ctx ended while it ran
		}
		if tries%10 == 0 && log != nil {
			log.Warn(what+" failed; retrying", "err", last)
		}
		tries++
		return retry.RetryableError(last)
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// pause waits d or until ctx ends; it reports whether ctx is still live.
func pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
