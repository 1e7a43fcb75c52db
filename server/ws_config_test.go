package server

import (
	"strings"
	"testing"
	"time"
)

// WebSocketConfig: zero takes the defaults; Validate names every problem.
func TestWSConfigDefaultsAndValidate(t *testing.T) {
	var w WebSocketConfig
	if err := w.Validate(); err != nil {
		t.Fatalf("zero config: %v", err)
	}
	w.EnsureDefaults()
	if w.SendQueueFramesMax != 256 || w.SendQueueBytesMax != 4<<20 || w.SlowConsumerTimeout != 10*time.Second ||
		w.ReadBytesMax != 4<<20 || w.PingInterval >= w.PongTimeout {
		t.Fatalf("defaults %+v", w)
	}
	bad := WebSocketConfig{SendQueueBytesMax: -1, SlowConsumerTimeout: -time.Second, PingInterval: time.Minute, PongTimeout: time.Second,
		AllowedOrigins: []string{"*", "https://console.example", "console.example", "https://x.example/path"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{"send queue bytes is negative", "slow consumer timeout is negative", "pong timeout",
		`"console.example"`, `"https://x.example/path"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q not reported in: %v", want, err)
		}
	}
	if strings.Contains(err.Error(), `"https://console.example"`) || strings.Contains(err.Error(), `"*"`) {
		t.Errorf("a good origin reported: %v", err)
	}
}
