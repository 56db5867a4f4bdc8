package gateway

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// proxySet is the parsed TESTUM_TRUSTED_PROXIES: addresses and networks
// whose X-Forwarded-For and X-Forwarded-Proto are believed.
type proxySet []netip.Prefix

// parseProxies reads addresses ("127.0.0.1", "::1") and CIDRs
// ("10.0.0.0/8"); anything else fails start, naming the entry.
func parseProxies(list []string) (proxySet, error) {
	var out proxySet
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if strings.Contains(s, "/") {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("trusted proxy %q: %w", s, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not an address or CIDR", s)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

func (ps proxySet) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For entry: an address, optionally with a
// port or in brackets (some proxies write "[::1]:443" or "1.2.3.4:5678").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if host, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			return a.Unmap(), true
		}
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.Unmap(), true
	}
	return netip.Addr{}, false
}

// remoteAddr is the peer of the TCP connection.
func remoteAddr(c *fiber.Ctx) netip.Addr {
	if a, ok := netip.AddrFromSlice(c.Context().RemoteIP()); ok {
		return a.Unmap()
	}
	return netip.Addr{}
}

// fromTrustedProxy says whether the connection's peer is a trusted proxy.
func (g *Gateway) fromTrustedProxy(c *fiber.Ctx) bool {
	return len(g.proxies) > 0 && g.proxies.contains(remoteAddr(c))
}

// clientIP is the address of the client the request comes from: the TCP
// peer, unless that is a trusted proxy. Then X-Forwarded-For is walked from
// the right, each hop having been appended by the proxy on its right:
// trusted proxies are skipped and the first untrusted hop is the client.
// Everything left of it was written by the client itself and is ignored, so
// a made-up prefix neither escapes the login limits nor reaches the audit
// log. When every hop is trusted, the leftmost one is the client; a hop that
// is not an address ends the walk at the last trusted one.
func (g *Gateway) clientIP(c *fiber.Ctx) string {
	peer := remoteAddr(c)
	if !peer.IsValid() {
		return c.IP()
	}
	if !g.fromTrustedProxy(c) {
		return peer.String()
	}
	var hops []string
	for _, v := range c.Request().Header.PeekAll(fiber.HeaderXForwardedFor) {
		hops = append(hops, strings.Split(string(v), ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break
		}
		client = a
		if !g.proxies.contains(a) {
			break
		}
	}
	return client.String()
}

// isTLS says whether the client's connection is TLS: ended here, or ended
// by a trusted proxy that says so in X-Forwarded-Proto (from anyone else
// the header is ignored).
func (g *Gateway) isTLS(c *fiber.Ctx) bool {
	if c.Context().IsTLS() {
		return true
	}
	if !g.fromTrustedProxy(c) {
		return false
	}
	// In a chain the first value is the edge's, where TLS ended. A value the
	// client made up could only claim https: that makes the gateway stricter
	// (Secure cookies, https origins), never laxer.
	proto, _, _ := strings.Cut(c.Get(fiber.HeaderXForwardedProto), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

// scheme is the scheme the client used to reach the gateway.
func (g *Gateway) scheme(c *fiber.Ctx) string {
	if g.isTLS(c) {
		return "https"
	}
	return "http"
}
