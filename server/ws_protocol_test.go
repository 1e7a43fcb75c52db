package server

import (
	"errors"
	"testing"

	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// Client frames: what parses into which start, and what is refused with
// which field named.
func TestWSParseFrames(t *testing.T) {
	cases := []struct {
		name  string
		frame string
		field string // the INVALID_ARGUMENT's field; "" when it parses
		check func(*testing.T, *heraldpb.SubscribeStart)
	}{
		{"not JSON", `{"type":`, "frame", nil},
		{"array", `[1,2]`, "frame", nil},
		{"no type", `{"id":"a"}`, "type", nil},
		{"unknown type", `{"type":"rewind","id":"a"}`, "type", nil},
		{"no id", `{"type":"subscribe","topic":"t","start":"earliest"}`, "id", nil},
		{"offset as a string", `{"type":"subscribe","id":"a","topic":"t","start":"offset","offset":"5"}`, "frame", nil},
		{"bad base64 key", `{"type":"subscribe","id":"a","topic":"t","start":"earliest","key":"%%"}`, "frame", nil},
		{"no topic", `{"type":"subscribe","id":"a","start":"earliest"}`, "topic", nil},
		{"no start", `{"type":"subscribe","id":"a","topic":"t"}`, "start", nil},
		{"unknown start", `{"type":"subscribe","id":"a","topic":"t","start":"yesterday"}`, "start", nil},
		{"negative offset", `{"type":"subscribe","id":"a","topic":"t","start":"offset","offset":-1}`, "offset", nil},
		{"offset missing", `{"type":"subscribe","id":"a","topic":"t","start":"offset"}`, "offset", nil},
		{"negative partition", `{"type":"subscribe","id":"a","topic":"t","partition":-2,"start":"earliest"}`, "partition", nil},
		{"negative epoch", `{"type":"subscribe","id":"a","topic":"t","epoch":-2,"start":"earliest"}`, "epoch", nil},
		{"bad time", `{"type":"subscribe","id":"a","topic":"t","start":"time","time":"yesterday"}`, "time", nil},
		{"earliest", `{"type":"subscribe","id":"a","topic":"t","start":"earliest","partition":3,"epoch":9,"tenant":"acme","key":"aw==","headers":{"h":"v"}}`, "",
			func(t *testing.T, st *heraldpb.SubscribeStart) {
				if st.GetPosition() != heraldpb.StartPosition_EARLIEST || st.GetPartition() != 3 || st.GetEpoch() != 9 ||
					st.GetTenantId() != "acme" || string(st.GetKey()) != "k" || st.GetHeaders()["h"] != "v" {
					t.Fatalf("start %v", st)
				}
			}},
		{"offset", `{"type":"subscribe","id":"a","topic":"t","start":"offset","offset":42}`, "",
			func(t *testing.T, st *heraldpb.SubscribeStart) {
				if st.GetOffset() != 42 {
					t.Fatalf("start %v", st)
				}
			}},
		{"sequence", `{"type":"subscribe","id":"a","topic":"t","start":"sequence","sequence":7,"tenant":"acme"}`, "",
			func(t *testing.T, st *heraldpb.SubscribeStart) {
				if st.GetSequence() != 7 {
					t.Fatalf("start %v", st)
				}
			}},
		{"time", `{"type":"subscribe","id":"a","topic":"t","start":"time","time":"2026-12-05T17:00:00.5Z"}`, "",
			func(t *testing.T, st *heraldpb.SubscribeStart) {
				if st.GetTimeUnixNano() != 1796490000500000000 {
					t.Fatalf("start %v", st)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := wsParse([]byte(tc.frame))
			var st *heraldpb.SubscribeStart
			if err == nil && m.Type == wsTypeSubscribe {
				st, err = m.subscribeStart()
			}
			if tc.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				tc.check(t, st)
				return
			}
			var herr *wire.Error
			if !errors.Is(err, wire.ErrInvalidArgument) || !errors.As(err, &herr) || herr.Metadata[wire.MetadataField] != tc.field {
				t.Fatalf("got %v, want INVALID_ARGUMENT naming %q", err, tc.field)
			}
			if e := wsErrorOf(m.ID, "frame", err); e.Code != "INVALID_ARGUMENT" || e.Metadata[wire.MetadataField] != tc.field {
				t.Fatalf("error frame %+v", e)
			}
		})
	}
}

// Error frames carry the reason as the code and the bounds as numbers.
func TestWSErrorFrames(t *testing.T) {
	e := wsErrorOf("s", "subscribe", wire.EpochChanged(3, 7, 10, 20))
	if e.Code != "EPOCH_CHANGED" || *e.Epoch != 3 || *e.CurrentEpoch != 7 || *e.LowWatermark != 10 || *e.HighWatermark != 20 {
		t.Fatalf("%+v", e)
	}
	e = wsErrorOf("s", "subscribe", wire.OffsetOutOfRange(5, 10, 20))
	if e.Code != "OFFSET_OUT_OF_RANGE" || *e.LowWatermark != 10 || *e.HighWatermark != 20 || e.Epoch != nil {
		t.Fatalf("%+v", e)
	}
	if e = wsErrorOf("r", "publish", wire.ErrUnavailable); e.Code != "UNAVAILABLE" {
		t.Fatalf("%+v", e)
	}
	if e = wsErrorOf("r", "publish", errors.New("boom")); e.Code != "INTERNAL" {
		t.Fatalf("%+v", e)
	}
}
