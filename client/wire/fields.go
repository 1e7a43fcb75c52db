package wire

import (
	"slices"
	"strings"

	"github.com/heraldlog/herald/client/heraldpb"
)

// The field lists of the registry contract (herald.proto): the envelope
// fields a topic may require of every event (TopicConfig.required_fields)
// and the TopicConfig fields AlterTopic may change
// (AlterTopicRequest.fields). Names are the proto field names; both lists
// are append-only. Each list is written once, here, with what it needs to
// act on a field, so a node, the CLI and the test fake cannot disagree.

// envelopeField is one requirable envelope field: its name and whether an
// event sets it.
type envelopeField struct {
	name  string
	isSet func(*heraldpb.Event) bool
}

var envelopeFields = [...]envelopeField{
	{"event_id", func(e *heraldpb.Event) bool { return e.GetEventId() != "" }},
	{"key", func(e *heraldpb.Event) bool { return len(e.GetKey()) > 0 }},
	{"causation_id", func(e *heraldpb.Event) bool { return e.GetCausationId() != "" }},
	{"correlation_id", func(e *heraldpb.Event) bool { return e.GetCorrelationId() != "" }},
	{"traceparent", func(e *heraldpb.Event) bool { return e.GetTraceparent() != "" }},
	{"schema", func(e *heraldpb.Event) bool { return e.GetSchema() != "" }},
	{"content_type", func(e *heraldpb.Event) bool { return e.GetContentType() != "" }},
}

// EnvelopeFields returns the names of the envelope fields a topic may
// require, in herald.proto order; the caller owns the slice.
func EnvelopeFields() []string {
	names := make([]string, len(envelopeFields))
	for i, f := range envelopeFields {
		names[i] = f.name
	}
	return names
}

// IsEnvelopeField reports whether a topic may require the named field.
func IsEnvelopeField(name string) bool {
	return slices.ContainsFunc(envelopeFields[:], func(f envelopeField) bool { return f.name == name })
}

// HasEnvelopeField reports whether e sets the named envelope field. A name
// that is not an envelope field counts as set: what a topic may require is
// checked when the topic is created (IsEnvelopeField), not per event.
func HasEnvelopeField(e *heraldpb.Event, name string) bool {
	for _, f := range envelopeFields {
		if f.name == name {
			return f.isSet(e)
		}
	}
	return true
}

// alterableField is one TopicConfig field AlterTopic may change: its name
// and how to copy it from one config to another.
type alterableField struct {
	name string
	copy func(dst, src *heraldpb.TopicConfig)
}

var alterableFields = [...]alterableField{
	{"retention_age_ms", func(dst, src *heraldpb.TopicConfig) { dst.RetentionAgeMs = src.GetRetentionAgeMs() }},
	{"retention_bytes", func(dst, src *heraldpb.TopicConfig) { dst.RetentionBytes = src.GetRetentionBytes() }},
	{"retention_events", func(dst, src *heraldpb.TopicConfig) { dst.RetentionEvents = src.GetRetentionEvents() }},
	{"default_ttl_ms", func(dst, src *heraldpb.TopicConfig) { dst.DefaultTtlMs = src.GetDefaultTtlMs() }},
	{"max_ttl_ms", func(dst, src *heraldpb.TopicConfig) { dst.MaxTtlMs = src.GetMaxTtlMs() }},
	{"dedupe_window_ms", func(dst, src *heraldpb.TopicConfig) { dst.DedupeWindowMs = src.GetDedupeWindowMs() }},
	{"schema_versions", func(dst, src *heraldpb.TopicConfig) { dst.SchemaVersions = slices.Clone(src.GetSchemaVersions()) }},
	{"auto_tenants", func(dst, src *heraldpb.TopicConfig) { dst.AutoTenants = src.GetAutoTenants() }},
	{"dead_letter_topic", func(dst, src *heraldpb.TopicConfig) { dst.DeadLetterTopic = src.GetDeadLetterTopic() }},
	{"protected_groups", func(dst, src *heraldpb.TopicConfig) {
		dst.ProtectedGroups = cloneProtectedGroups(src.GetProtectedGroups())
	}},
}

// cloneProtectedGroups returns a deep copy of groups (nil for none).
func cloneProtectedGroups(groups []*heraldpb.ProtectedGroup) []*heraldpb.ProtectedGroup {
	if len(groups) == 0 {
		return nil
	}
	out := make([]*heraldpb.ProtectedGroup, len(groups))
	for i, g := range groups {
		out[i] = &heraldpb.ProtectedGroup{Group: g.GetGroup(), SlowLag: g.GetSlowLag(), PauseLag: g.GetPauseLag()}
	}
	return out
}

// AlterableFields returns the names of the TopicConfig fields AlterTopic
// may change, in herald.proto order; the caller owns the slice.
func AlterableFields() []string {
	names := make([]string, len(alterableFields))
	for i, f := range alterableFields {
		names[i] = f.name
	}
	return names
}

// AlterTopicConfig copies the named alterable fields of src into dst. A
// name that is not alterable is refused with INVALID_ARGUMENT before
// anything is copied, so dst is either fully altered or unchanged.
func AlterTopicConfig(dst, src *heraldpb.TopicConfig, fields []string) error {
	copies := make([]func(dst, src *heraldpb.TopicConfig), 0, len(fields))
	for _, name := range fields {
		i := slices.IndexFunc(alterableFields[:], func(f alterableField) bool { return f.name == name })
		if i < 0 {
			return InvalidArgument("fields", "topic field %q cannot be altered (alterable: %s)", name, strings.Join(AlterableFields(), ", "))
		}
		copies = append(copies, alterableFields[i].copy)
	}
	for _, c := range copies {
		c(dst, src)
	}
	return nil
}
