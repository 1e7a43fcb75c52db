package main

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

func renderJSON(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, newJSONWriter(&b).write(v))
	return b.String()
}

func TestRenderEvent(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	base := func() *client.Event {
		return &client.Event{Offset: 12, Sequence: 5, TenantId: "acme", EventId: "e1", ProducedAtUnixNano: at.UnixNano()}
	}
	cases := []struct {
		name         string
		edit         func(*client.Event)
		defaultTTLMs int64
		want         string
	}{
		{
			name: "UTF-8 payload is a string, unset optional keys are left out",
			edit: func(e *client.Event) { e.Payload = []byte(`héllo <b>"x"</b>`) },
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload":"héllo <b>\"x\"</b>"}`,
		},
		{
			name: "binary payload is base64",
			edit: func(e *client.Event) { e.Payload = []byte{0xff, 0xfe, 0x00} },
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload_b64":"//4A"}`,
		},
		{
			name: "empty payload is an empty string",
			edit: func(*client.Event) {},
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload":""}`,
		},
		{
			name: "causation id and key when set",
			edit: func(e *client.Event) { e.CausationId = "c9"; e.Key = []byte("k1"); e.Payload = []byte("p") },
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","causation_id":"c9","key":"k1","payload":"p"}`,
		},
		{
			name: "binary key is base64",
			edit: func(e *client.Event) { e.Key = []byte{0x80}; e.Payload = []byte("p") },
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","key_b64":"gA==","payload":"p"}`,
		},
		{
			name: "an event's own TTL gives expires_at",
			edit: func(e *client.Event) { e.TtlMs = 90_000; e.Payload = []byte("p") },
			want: `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload":"p","expires_at":"2025-01-02T03:05:35.123456789Z"}`,
		},
		{
			name:         "else the topic's default TTL",
			edit:         func(e *client.Event) { e.Payload = []byte("p") },
			defaultTTLMs: 24 * 60 * 60 * 1000,
			want:         `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload":"p","expires_at":"2025-01-03T03:04:05.123456789Z"}`,
		},
		{
			name:         "the event's own TTL wins over the default",
			edit:         func(e *client.Event) { e.TtlMs = 1000; e.Payload = []byte("p") },
			defaultTTLMs: 24 * 60 * 60 * 1000,
			want:         `{"partition":3,"offset":12,"sequence":5,"tenant":"acme","event_id":"e1","produced_at":"2025-01-02T03:04:05.123456789Z","payload":"p","expires_at":"2025-01-02T03:04:06.123456789Z"}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := base()
			tc.edit(e)
			got := renderJSON(t, renderEvent(3, e, tc.defaultTTLMs))
			assert.Equal(t, tc.want+"\n", got)
			var decoded map[string]any
			require.NoError(t, json.Unmarshal([]byte(got), &decoded), "valid JSON")
		})
	}
}

func TestProducedLineKeys(t *testing.T) {
	got := renderJSON(t, producedLine{Partition: 0, Offset: 12, Sequence: 5, EventID: "abc"})
	assert.Equal(t, `{"partition":0,"offset":12,"sequence":5,"event_id":"abc","duplicate":false}`+"\n", got)
	got = renderJSON(t, producedLine{Partition: 1, Offset: 3, Sequence: 2, EventID: "x", Duplicate: true})
	assert.Equal(t, `{"partition":1,"offset":3,"sequence":2,"event_id":"x","duplicate":true}`+"\n", got)
}
