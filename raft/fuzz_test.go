package raft

import (
	"errors"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/raft/raftpb"
)

// FuzzConvert: the bytes of a Raft RPC as a peer sends them (kind picks
// the message) unmarshal, pass the checks the service runs before
// converting (checkLogTypes), and convert to hashicorp/raft's struct and
// back without losing or changing a field; never a panic
// (docs/operations.md, "Fuzz targets").
func FuzzConvert(f *testing.F) {
	appended := time.Unix(1700000000, 123456789)
	seeds := []proto.Message{
		appendEntriesRequestToProto(7, &hraft.AppendEntriesRequest{
			RPCHeader: testHeader, Term: 5, Leader: []byte("leader"), PrevLogEntry: 10, PrevLogTerm: 4, LeaderCommitIndex: 9,
			Entries: []*hraft.Log{
				{Index: 11, Term: 5, Type: hraft.LogCommand, Data: []byte("d"), Extensions: []byte("e"), AppendedAt: appended},
				{Index: 12, Term: 5, Type: hraft.LogConfiguration, Data: []byte("c")},
			},
		}),
		appendEntriesResponseToProto(&hraft.AppendEntriesResponse{RPCHeader: testHeader, Term: 5, LastLog: 12, Success: true, NoRetryBackoff: true}),
		requestVoteRequestToProto(7, &hraft.RequestVoteRequest{RPCHeader: testHeader, Term: 6, LastLogIndex: 12, LastLogTerm: 5, LeadershipTransfer: true}),
		requestVoteResponseToProto(&hraft.RequestVoteResponse{RPCHeader: testHeader, Term: 6, Granted: true}),
		requestPreVoteRequestToProto(7, &hraft.RequestPreVoteRequest{RPCHeader: testHeader, Term: 6, LastLogIndex: 12, LastLogTerm: 5}),
		requestPreVoteResponseToProto(&hraft.RequestPreVoteResponse{RPCHeader: testHeader, Term: 6, Granted: true}),
		timeoutNowRequestToProto(7, &hraft.TimeoutNowRequest{RPCHeader: testHeader}),
		timeoutNowResponseToProto(&hraft.TimeoutNowResponse{RPCHeader: testHeader}),
		installSnapshotRequestToProto(7, &hraft.InstallSnapshotRequest{RPCHeader: testHeader, SnapshotVersion: 1, Term: 6, Leader: []byte("l"),
			LastLogIndex: 100, LastLogTerm: 5, Configuration: []byte("conf"), ConfigurationIndex: 90, Size: 4096}),
		installSnapshotResponseToProto(&hraft.InstallSnapshotResponse{RPCHeader: testHeader, Term: 6, Success: true}),
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(i), b)
	}
	f.Add(byte(0), []byte{})
	for _, typ := range []raftpb.LogType{6, 256} { // log types Raft does not know
		b, err := proto.Marshal(&raftpb.AppendEntriesRequest{Term: 1, Entries: []*raftpb.Log{{Index: 1, Type: typ}}})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(byte(0), b)
	}

	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		switch kind % 10 {
		case 0:
			var in raftpb.AppendEntriesRequest
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			if err := checkLogTypes(in.GetEntries()); err != nil {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("checkLogTypes: %v is not ErrProtocol", err)
				}
				return
			}
			converted := appendEntriesRequestFromProto(&in)
			isHeartbeat(converted)
			requireSame(t, &in, appendEntriesRequestToProto(in.GetGroupId(), converted))
		case 1:
			var in raftpb.AppendEntriesResponse
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			var out hraft.AppendEntriesResponse
			appendEntriesResponseFromProto(&in, &out)
			requireSame(t, &in, appendEntriesResponseToProto(&out))
		case 2:
			var in raftpb.RequestVoteRequest
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			requireSame(t, &in, requestVoteRequestToProto(in.GetGroupId(), requestVoteRequestFromProto(&in)))
		case 3:
			var in raftpb.RequestVoteResponse
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			var out hraft.RequestVoteResponse
			requestVoteResponseFromProto(&in, &out)
			requireSame(t, &in, requestVoteResponseToProto(&out))
		case 4:
			var in raftpb.RequestPreVoteRequest
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			requireSame(t, &in, requestPreVoteRequestToProto(in.GetGroupId(), requestPreVoteRequestFromProto(&in)))
		case 5:
			var in raftpb.RequestPreVoteResponse
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			var out hraft.RequestPreVoteResponse
			requestPreVoteResponseFromProto(&in, &out)
			requireSame(t, &in, requestPreVoteResponseToProto(&out))
		case 6:
			var in raftpb.TimeoutNowRequest
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			requireSame(t, &in, timeoutNowRequestToProto(in.GetGroupId(), timeoutNowRequestFromProto(&in)))
		case 7:
			var in raftpb.TimeoutNowResponse
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			var out hraft.TimeoutNowResponse
			timeoutNowResponseFromProto(&in, &out)
			requireSame(t, &in, timeoutNowResponseToProto(&out))
		case 8:
			var in raftpb.InstallSnapshotRequest
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			requireSame(t, &in, installSnapshotRequestToProto(in.GetGroupId(), installSnapshotRequestFromProto(&in)))
		case 9:
			var in raftpb.InstallSnapshotResponse
			if proto.Unmarshal(data, &in) != nil {
				return
			}
			var out hraft.InstallSnapshotResponse
			installSnapshotResponseFromProto(&in, &out)
			requireSame(t, &in, installSnapshotResponseToProto(&out))
		}
	})
}

// requireSame fails unless got carries every known field of want (unknown
// fields are not converted, by design) and the header is present when
// want's was (headerToProto always sets one).
func requireSame(t *testing.T, want, got proto.Message) {
	t.Helper()
	want = proto.Clone(want)
	dropUnknown(want)
	fillHeader(want)
	if !proto.Equal(want, got) {
		t.Fatalf("round trip lost a field:\n want %v\n  got %v", want, got)
	}
}

// dropUnknown clears m's unknown fields (its own and its messages').
func dropUnknown(m proto.Message) {
	r := m.ProtoReflect()
	r.SetUnknown(nil)
	switch v := m.(type) {
	case *raftpb.AppendEntriesRequest:
		for _, l := range v.GetEntries() {
			l.ProtoReflect().SetUnknown(nil)
		}
		dropHeaderUnknown(v.GetHeader())
	case interface{ GetHeader() *raftpb.RPCHeader }:
		dropHeaderUnknown(v.GetHeader())
	}
}

func dropHeaderUnknown(h *raftpb.RPCHeader) {
	if h != nil {
		h.ProtoReflect().SetUnknown(nil)
	}
}

// fillHeader sets an empty header where m has none: the conversion makes
// a zero header from a missing one, which encodes as an empty message.
func fillHeader(m proto.Message) {
	fd := m.ProtoReflect().Descriptor().Fields().ByName("header")
	if fd != nil && !m.ProtoReflect().Has(fd) {
		m.ProtoReflect().Set(fd, m.ProtoReflect().NewField(fd))
	}
}

// An entry of a log type Raft does not know is refused before conversion:
// 256 would otherwise arrive as LogCommand (hraft.LogType is a byte) and 6
// would be stored and panic the node at commit.
func TestCheckLogTypesRefusesUnknownTypes(t *testing.T) {
	for typ := raftpb.LogType(0); typ <= logTypeMax; typ++ {
		if err := checkLogTypes([]*raftpb.Log{{Type: typ}}); err != nil {
			t.Fatalf("type %d refused: %v", typ, err)
		}
		if got := logsFromProto([]*raftpb.Log{{Type: typ}})[0].Type; int32(got) != int32(typ) {
			t.Fatalf("type %d converted to %d", typ, got)
		}
	}
	for _, typ := range []raftpb.LogType{logTypeMax + 1, 256, -1} {
		err := checkLogTypes([]*raftpb.Log{{Type: raftpb.LogType_LOG_TYPE_COMMAND}, {Index: 9, Type: typ}})
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("type %d: %v, want ErrProtocol", typ, err)
		}
	}
}
