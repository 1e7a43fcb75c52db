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
		name string
		edit func(*client.Event)
		want string
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
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := base()
			tc.edit(e)
			got := renderJSON(t, renderEvent(3, e))
			assert.Equal(t, tc.want+"\n", got)
			var decoded map[string]any
			require.NoError(t, json.Unmarshal([]byte(got), &decoded), "valid JSON")
		})
	}
}

func TestProducedLineKeys(t *testing.T) {
	got := renderJSON(t, producedLine{Partition: 0, Offset: 12, Sequence: 5, EventID: "abc"})
	assert.Equal(t, `{"partition":0,"offset":12,"sequence":5,"event_id":"abc"}`+"\n", got)
}
