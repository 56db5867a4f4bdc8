package sshx

// RefuseSignals makes c send its signals under a request name that sshd
// does not know and refuses, as it refuses "signal" for root logins, so
// that tests with an unprivileged user reach the fallback kill.
func RefuseSignals(c *Client) { c.signalRequest = "signal-refused@testum.invalid" }
