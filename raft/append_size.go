package raft

import (
	"fmt"

	hraft "github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/heraldlog/herald/raft/raftpb"
)

// appendFramingBytesMax is what an AppendEntries message may need besides
// the data of the one entry it must be able to carry: the request's own
// fields (group, term, header id and address, leader address, previous
// entry, commit index) and that entry's index, term, type, extensions and
// time with their tags and lengths. Addresses and ids are short strings;
// this leaves them 64 KiB.
const appendFramingBytesMax = 64 << 10

// entriesFieldNumber is the field number of AppendEntriesRequest.entries.
var entriesFieldNumber = (&raftpb.AppendEntriesRequest{}).ProtoReflect().Descriptor().Fields().ByName("entries").Number()

// EntryBytesMax is the largest entry data one AppendEntries message of this
// transport can carry (MaxMessageBytes less appendFramingBytesMax). An entry
// larger than this can never replicate: whoever proposes entries to the
// group must refuse larger ones before proposing (partition.Batcher does).
func (t *Transport) EntryBytesMax() int { return t.mux.opts.MaxMessageBytes - appendFramingBytesMax }

// appendEntriesMessage converts args into the message sent for it, bounded
// by MaxMessageBytes. hashicorp/raft bounds an AppendEntries only by count
// (Config.MaxAppendEntries), and entries are up to EntryBytesMax each, so
// the entries of one request may together exceed what gRPC lets through;
// gRPC would then fail the call every time and the follower would never
// catch up. When they do, only the longest prefix of the entries that fits
// is sent, and args.Entries is cut to it in place: hashicorp/raft v1.7.3
// reads args.Entries back after the call to advance the follower's next
// and matched index (replicateTo's updateLastAppended, pipelineSend's
// nextIndex, pipelineDecode through AppendFuture.Request), so it sends the
// rest next and never counts an unsent entry as replicated. The follower
// takes the prefix as any shorter append (commit index capped by its last
// entry). A first entry that does not fit alone is an error wrapping
// ErrEntryTooLarge; nothing is sent.
func appendEntriesMessage(groupID uint64, args *hraft.AppendEntriesRequest, maxBytes int) (*raftpb.AppendEntriesRequest, error) {
	msg := appendEntriesRequestToProto(groupID, args)
	size := proto.Size(msg)
	if size <= maxBytes {
		return msg, nil
	}
	keep := len(msg.Entries)
	for keep > 0 && size > maxBytes {
		keep--
		size -= protowire.SizeTag(entriesFieldNumber) + protowire.SizeBytes(proto.Size(msg.Entries[keep]))
	}
	if keep == 0 {
		return nil, fmt.Errorf("%w: group %d: entry %d encodes to %d bytes in an AppendEntries; a message may carry %d",
			ErrEntryTooLarge, groupID, args.Entries[0].Index, proto.Size(msg.Entries[0]), maxBytes)
	}
	msg.Entries = msg.Entries[:keep:keep]
	args.Entries = args.Entries[:keep:keep]
	return msg, nil
}
