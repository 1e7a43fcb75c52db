package raft

import (
	"testing"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
)

func appendOf(entries, entryBytes int) *hraft.AppendEntriesRequest {
	args := &hraft.AppendEntriesRequest{
		RPCHeader: hraft.RPCHeader{ProtocolVersion: hraft.ProtocolVersionMax, ID: []byte("n1"), Addr: []byte("127.0.0.1:7000")},
		Term:      3, Leader: []byte("127.0.0.1:7000"), PrevLogEntry: 9, PrevLogTerm: 3, LeaderCommitIndex: 9,
	}
	for i := range entries {
		args.Entries = append(args.Entries, &hraft.Log{Index: uint64(10 + i), Term: 3, Type: hraft.LogCommand, Data: make([]byte, entryBytes)})
	}
	return args
}

// An AppendEntries whose entries exceed one message is sent as its longest
// prefix that fits, and hraft's request is cut to it (hraft reads it back
// to advance the follower); an entry that cannot fit alone is refused.
func TestAppendEntriesMessageSendsThePrefixThatFits(t *testing.T) {
	const entryBytes = 100 << 10
	args := appendOf(10, entryBytes)
	msg, err := appendEntriesMessage(7, args, 1<<20)
	require.NoError(t, err)
	require.Len(t, msg.Entries, 10, "fits whole: unchanged")
	require.Len(t, args.Entries, 10)

	for _, maxBytes := range []int{350 << 10, 3*entryBytes + 3*64 + 200, entryBytes + 200} {
		args := appendOf(10, entryBytes)
		msg, err := appendEntriesMessage(7, args, maxBytes)
		require.NoError(t, err)
		require.LessOrEqual(t, proto.Size(msg), maxBytes)
		require.NotEmpty(t, msg.Entries)
		require.Len(t, args.Entries, len(msg.Entries), "hraft's request must be cut to what is sent")
		if len(msg.Entries) < 10 {
			longer := appendOf(len(msg.Entries)+1, entryBytes)
			require.Greater(t, proto.Size(appendEntriesRequestToProto(7, longer)), maxBytes, "not the longest prefix that fits")
		}
		require.Equal(t, uint64(10+len(msg.Entries)-1), args.Entries[len(args.Entries)-1].Index)
	}

	args = appendOf(2, entryBytes)
	_, err = appendEntriesMessage(7, args, entryBytes)
	require.ErrorIs(t, err, ErrEntryTooLarge)
	require.Len(t, args.Entries, 2, "nothing sent, nothing cut")

	heartbeat := appendOf(0, 0)
	msg, err = appendEntriesMessage(7, heartbeat, appendFramingBytesMax)
	require.NoError(t, err)
	require.Empty(t, msg.Entries)
}

// The largest entry a transport admits, with a request's framing around
// it, fits in one message.
func TestEntryBytesMaxFitsInOneMessage(t *testing.T) {
	n := startNode(t, nil, "n", func(o *MuxOptions) { o.MaxMessageBytes = 1 << 20; o.SnapshotChunkBytes = 1 << 18 })
	tr, err := n.mux.Transport(1)
	require.NoError(t, err)
	defer tr.Close()
	args := appendOf(1, tr.EntryBytesMax())
	msg, err := appendEntriesMessage(1, args, n.mux.opts.MaxMessageBytes)
	require.NoError(t, err)
	require.Len(t, msg.Entries, 1)
}
