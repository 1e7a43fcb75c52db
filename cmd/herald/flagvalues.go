package main

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
	heraldlog "github.com/heraldlog/herald/log"
)

// Flag values that parse while cobra reads the command line, so that a bad
// value is a usage error (exit 2) that names the flag:
//   invalid argument "7x" for "--retention-age" flag: ...

var (
	_ pflag.Value = (*millisFlag)(nil)
	_ pflag.Value = (*orderingFlag)(nil)
	_ pflag.Value = (*versionsFlag)(nil)
	_ pflag.Value = (*fieldsFlag)(nil)
	_ pflag.Value = (*protectFlag)(nil)
)

// parseDuration parses a Go duration ("90m", "1h30m") or a number of days
// with a "d" suffix, optionally followed by a Go duration ("7d", "1d12h").
func parseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: want a Go duration (90m, 1h30m) or days (7d, 1d12h)", s)
	}
	if n > uint64(math.MaxInt64/int64(24*time.Hour)) {
		return 0, fmt.Errorf("%q: too long", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	extra, err := time.ParseDuration(rest)
	if err != nil {
		return 0, fmt.Errorf("%q: want a Go duration (90m, 1h30m) or days (7d, 1d12h)", s)
	}
	if extra < 0 || d > math.MaxInt64-extra {
		return 0, fmt.Errorf("%q: want a non-negative duration", s)
	}
	return d + extra, nil
}

// formatMillis renders a duration in milliseconds as days when whole
// ("7d"), else as a Go duration; zero is zero.
func formatMillis(ms int64) string {
	const day = 24 * 60 * 60 * 1000
	switch {
	case ms == 0:
		return "0"
	case ms%day == 0:
		return fmt.Sprintf("%dd", ms/day)
	default:
		return (time.Duration(ms) * time.Millisecond).String()
	}
}

// millisFlag is a non-negative duration of whole milliseconds, stored as
// milliseconds (the unit of the wire's *_ms fields).
type millisFlag struct{ ms *int64 }

func (f millisFlag) String() string {
	if f.ms == nil {
		return "0"
	}
	return formatMillis(*f.ms)
}

func (f millisFlag) Set(s string) error {
	d, err := parseDuration(s)
	if err != nil {
		return err
	}
	switch {
	case d < 0:
		return errors.New("want a non-negative duration")
	case d%time.Millisecond != 0:
		return errors.New("want a whole number of milliseconds")
	}
	*f.ms = d.Milliseconds()
	return nil
}

func (millisFlag) Type() string { return "duration" }

// orderingNames are the CLI names of the orderings.
var orderingNames = map[string]client.Ordering{
	"per-tenant": client.OrderingPerTenant,
	"per-key":    client.OrderingPerKey,
	"none":       client.OrderingNone,
}

// orderingName is the CLI name of o; unspecified is per-tenant.
func orderingName(o client.Ordering) string {
	for name, v := range orderingNames {
		if v == o {
			return name
		}
	}
	if o == 0 {
		return "per-tenant"
	}
	return o.String()
}

// orderingFlag is per-tenant, per-key or none.
type orderingFlag struct{ ordering *client.Ordering }

func (f orderingFlag) String() string {
	if f.ordering == nil {
		return "per-tenant"
	}
	return orderingName(*f.ordering)
}

func (f orderingFlag) Set(s string) error {
	o, ok := orderingNames[s]
	if !ok {
		return errors.New("want per-tenant, per-key or none")
	}
	*f.ordering = o
	return nil
}

func (orderingFlag) Type() string { return "ordering" }

// versionsFlag is a comma-separated list of schema versions (each at least
// 1); empty means any version.
type versionsFlag struct{ versions *[]uint32 }

func (f versionsFlag) String() string {
	if f.versions == nil {
		return ""
	}
	return joinVersions(*f.versions)
}

func (f versionsFlag) Set(s string) error {
	var versions []uint32
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		v, err := strconv.ParseUint(part, 10, 32)
		if err != nil || v == 0 {
			return fmt.Errorf("%q is not a schema version (1 or more)", part)
		}
		if !slices.Contains(versions, uint32(v)) {
			versions = append(versions, uint32(v))
		}
	}
	*f.versions = versions
	return nil
}

func (versionsFlag) Type() string { return "versions" }

func joinVersions(versions []uint32) string {
	parts := make([]string, len(versions))
	for i, v := range versions {
		parts[i] = strconv.FormatUint(uint64(v), 10)
	}
	return strings.Join(parts, ",")
}

// fieldsFlag is a comma-separated list of envelope field names.
type fieldsFlag struct{ fields *[]string }

func (f fieldsFlag) String() string {
	if f.fields == nil {
		return ""
	}
	return strings.Join(*f.fields, ",")
}

func (f fieldsFlag) Set(s string) error {
	var fields []string
	for part := range strings.SplitSeq(s, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		if !wire.IsEnvelopeField(part) {
			return fmt.Errorf("%q is not an envelope field (%s)", part, strings.Join(wire.EnvelopeFields(), ", "))
		}
		if !slices.Contains(fields, part) {
			fields = append(fields, part)
		}
	}
	*f.fields = fields
	return nil
}

func (fieldsFlag) Type() string { return "fields" }

// readOptions turns --stale into the SDK's registry read options.
func readOptions(stale bool) []client.ReadOption {
	if stale {
		return []client.ReadOption{client.Stale()}
	}
	return nil
}

// protectNone is the --protect-group value that protects no group (to
// clear a topic's protection with alter).
const protectNone = "none"

// protectFlag is a repeatable NAME:SLOW:PAUSE, a consumer group the topic
// protects with its slow and pause lags in events (either may be 0, not
// both: the server checks the rest), or "none".
type protectFlag struct{ groups *[]*heraldpb.ProtectedGroup }

func (f protectFlag) String() string {
	if f.groups == nil {
		return ""
	}
	return formatProtectedGroups(*f.groups)
}

func (f protectFlag) Set(s string) error {
	if s == protectNone {
		*f.groups = []*heraldpb.ProtectedGroup{}
		return nil
	}
	parts := strings.Split(s, ":")
	if len(parts) != 3 || parts[0] == "" {
		return fmt.Errorf("%q: want GROUP:SLOW:PAUSE (lags in events, 0: that stage off) or %s", s, protectNone)
	}
	var lags [2]uint64
	for i, part := range parts[1:] {
		v, err := strconv.ParseUint(part, 10, 64)
		if err != nil {
			return fmt.Errorf("%q: lag %q is not a number of events", s, part)
		}
		lags[i] = v
	}
	*f.groups = append(*f.groups, &heraldpb.ProtectedGroup{Group: parts[0], SlowLag: lags[0], PauseLag: lags[1]})
	return nil
}

func (protectFlag) Type() string { return "group:slow:pause" }

// formatProtectedGroups renders protected groups as the flag takes them,
// comma-separated.
func formatProtectedGroups(groups []*heraldpb.ProtectedGroup) string {
	parts := make([]string, len(groups))
	for i, g := range groups {
		parts[i] = fmt.Sprintf("%s:%d:%d", g.GetGroup(), g.GetSlowLag(), g.GetPauseLag())
	}
	return strings.Join(parts, ",")
}

// compressionFlag is a log.Compression: none, snappy or zstd.
type compressionFlag struct{ c *heraldlog.Compression }

func (f compressionFlag) String() string {
	if f.c == nil {
		return heraldlog.CompressionNone.String()
	}
	return f.c.String()
}

func (f compressionFlag) Set(s string) error {
	c, err := heraldlog.ParseCompression(s)
	if err != nil {
		return errors.New("want none, snappy or zstd")
	}
	*f.c = c
	return nil
}

func (compressionFlag) Type() string { return "compression" }
