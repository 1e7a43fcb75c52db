package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/heraldlog/herald/client"
)

// jsonWriter writes one JSON document per line, without HTML escaping (a
// payload's "<" stays "<"). It is not safe for concurrent use.
type jsonWriter struct{ enc *json.Encoder }

func newJSONWriter(w io.Writer) *jsonWriter {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &jsonWriter{enc: enc}
}

// write encodes v followed by a newline.
func (j *jsonWriter) write(v any) error { return j.enc.Encode(v) }

// newTable returns a tabwriter for aligned human tables; Flush it.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
}

// eventLine is the JSON line `herald consume` prints per event. Keys are
// part of the CLI contract: payload is a string when the payload is valid
// UTF-8, else base64 under payload_b64 (likewise key / key_b64);
// causation_id and key appear only when set; expires_at only when the
// event has a TTL.
type eventLine struct {
	Partition   uint32  `json:"partition"`
	Offset      uint64  `json:"offset"`
	Sequence    uint64  `json:"sequence"`
	Tenant      string  `json:"tenant"`
	EventID     string  `json:"event_id"`
	ProducedAt  string  `json:"produced_at"`
	CausationID string  `json:"causation_id,omitempty"`
	Key         *string `json:"key,omitempty"`
	KeyB64      *string `json:"key_b64,omitempty"`
	Payload     *string `json:"payload,omitempty"`
	PayloadB64  *string `json:"payload_b64,omitempty"`
	ExpiresAt   string  `json:"expires_at,omitempty"`
}

// ttlMsMax is the largest TTL whose expiry renderEvent can compute
// without overflowing a time.Duration; longer ones never expire in practice.
const ttlMsMax = int64(1<<63-1) / int64(time.Millisecond)

// renderEvent makes the JSON line of an event read from partition; an
// event without a TTL of its own expires after defaultTTLMs (the topic's;
// 0: never).
func renderEvent(partition uint32, e *client.Event, defaultTTLMs int64) eventLine {
	line := eventLine{
		Partition:   partition,
		Offset:      e.GetOffset(),
		Sequence:    e.GetSequence(),
		Tenant:      e.GetTenantId(),
		EventID:     e.GetEventId(),
		ProducedAt:  time.Unix(0, e.GetProducedAtUnixNano()).UTC().Format(time.RFC3339Nano),
		CausationID: e.GetCausationId(),
	}
	if key := e.GetKey(); len(key) > 0 {
		line.Key, line.KeyB64 = textOrBase64(key)
	}
	line.Payload, line.PayloadB64 = textOrBase64(e.GetPayload())
	ttlMs := e.GetTtlMs()
	if ttlMs <= 0 {
		ttlMs = defaultTTLMs
	}
	if ttlMs > 0 && ttlMs <= ttlMsMax && e.GetProducedAtUnixNano() != 0 {
		expires := time.Unix(0, e.GetProducedAtUnixNano()).Add(time.Duration(ttlMs) * time.Millisecond)
		line.ExpiresAt = expires.UTC().Format(time.RFC3339Nano)
	}
	return line
}

// textOrBase64 returns b as text when it is valid UTF-8, else as base64.
func textOrBase64(b []byte) (text, b64 *string) {
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	s := base64.StdEncoding.EncodeToString(b)
	return nil, &s
}

// producedLine is the JSON line `herald produce` prints per acknowledged
// event; its keys are part of the CLI contract.
type producedLine struct {
	Partition uint32 `json:"partition"`
	Offset    uint64 `json:"offset"`
	Sequence  uint64 `json:"sequence"`
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

// formatTime renders a Unix-nanosecond timestamp for tables; 0 is "-".
func formatTime(unixNano int64) string {
	if unixNano == 0 {
		return "-"
	}
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339)
}
