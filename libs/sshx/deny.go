package sshx

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
)

// DefaultDenyRanges are the ranges no host may be reached at unless the
// operator says otherwise: link-local addresses, where cloud metadata
// services (169.254.169.254, fd00:ec2::254) hand out instance credentials
// to whoever asks from the machine.
const DefaultDenyRanges = "169.254.0.0/16,fe80::/10,fd00:ec2::254/128"

// DenyList is the target policy: address ranges testum never connects to.
// A jump host or platform test that could reach them would let anyone who
// may add a platform probe the executor's own network.
type DenyList []netip.Prefix

// DefaultDeny is DefaultDenyRanges parsed.
func DefaultDeny() DenyList {
	d, err := ParseDenyList(DefaultDenyRanges)
	if err != nil {
		panic("sshx: DefaultDenyRanges: " + err.Error())
	}
	return d
}

// ParseDenyList reads a comma-separated list of CIDR ranges or single
// addresses. "none" is the empty (non-nil) list: nothing is denied.
func ParseDenyList(s string) (DenyList, error) {
	d := DenyList{}
	if strings.EqualFold(strings.TrimSpace(s), "none") {
		return d, nil
	}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, fmt.Errorf("%q is neither a CIDR range nor an address", f)
			}
			a = a.Unmap()
			d = append(d, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range (like 169.254.0.0/16)", f)
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		d = append(d, p.Masked())
	}
	if len(d) == 0 {
		return nil, fmt.Errorf("no range given: list CIDR ranges, or none to deny nothing")
	}
	return d, nil
}

// Denying returns the range that denies a, if any.
func (d DenyList) Denying(a netip.Addr) (netip.Prefix, bool) {
	a = a.Unmap().WithZone("")
	for _, p := range d {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// String lists the ranges as ParseDenyList reads them.
func (d DenyList) String() string {
	if len(d) == 0 {
		return "none"
	}
	s := make([]string, len(d))
	for i, p := range d {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// CheckHost refuses a host given as an address in a denied range. Host
// names pass: they are checked where they are resolved, when dialed.
func (d DenyList) CheckHost(host string) error {
	a, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return nil
	}
	return d.check(a)
}

func (d DenyList) check(a netip.Addr) error {
	if p, denied := d.Denying(a); denied {
		return &deniedError{addr: a.Unmap().WithZone(""), by: p}
	}
	return nil
}

// deniedError says which range refused which address.
type deniedError struct {
	addr netip.Addr
	by   netip.Prefix
}

func (e *deniedError) Error() string {
	return fmt.Sprintf("address %s is denied by the target policy (range %s of TESTUM_TARGET_DENY)", e.addr, e.by)
}

func (e *deniedError) Unwrap() error { return ErrTargetDenied }

// control is the net.Dialer Control function: it runs after the name is
// resolved and before connect(2), so no packet goes to a denied address
// whatever name led to it.
func (d DenyList) control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("target policy: unexpected address %q: %w", address, err)
	}
	return d.check(ap.Addr())
}

// checkRemote is the check for a host dialed through a jump host, which
// resolves the name itself: an address is checked as is, a name as this
// machine resolves it (every address must pass). A name this machine
// cannot resolve is left to the jump host.
func (d DenyList) checkRemote(ctx context.Context, hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return d.check(a)
	}
	if len(d) == 0 {
		return nil
	}
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if err := d.check(a); err != nil {
			return err
		}
	}
	return nil
}
