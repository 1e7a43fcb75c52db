package raft

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/raft/raftpb"
)

// damageStore truncates dir's raft.db to half.
func damageStore(t *testing.T, dir string) {
	t.Helper()
	path := filepath.Join(dir, raftDBFile)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.NoError(t, os.Truncate(path, st.Size()/2))
}

func movedAside(t *testing.T, dir string) []string {
	t.Helper()
	moved, err := filepath.Glob(dir + ".damaged-*")
	require.NoError(t, err)
	return moved
}

// PrepareRejoin resumes correctly from every stage a crash can leave.
func TestPrepareRejoinResumesFromEveryStage(t *testing.T) {
	type want struct {
		marker  RejoinStage // "" for none
		moved   int
		dirKept bool
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		want  want
	}{
		{"clean, no marker: open normally", func(*testing.T, string) {}, want{"", 0, true}},
		{"damaged, no marker: mark then move aside", damageStore, want{RejoinDamaged, 1, false}},
		{"marker damaged, directory still there (crash before the move)", func(t *testing.T, dir string) {
			require.NoError(t, MarkDamaged(dir, 7, "found at apply"))
		}, want{RejoinDamaged, 1, false}},
		{"marker damaged, directory already moved", func(t *testing.T, dir string) {
			require.NoError(t, MarkDamaged(dir, 7, "found at open"))
			_, err := QuarantineGroup(dir)
			require.NoError(t, err)
		}, want{RejoinDamaged, 1, false}},
		{"marker demoted, state intact: resume waiting", func(t *testing.T, dir string) {
			require.NoError(t, WriteRejoinMarker(dir, &RejoinMarker{Group: 7, Stage: RejoinDemoted, CatchUpIndex: 42}))
		}, want{RejoinDemoted, 0, true}},
		{"marker demoted, state damaged again: start over", func(t *testing.T, dir string) {
			require.NoError(t, WriteRejoinMarker(dir, &RejoinMarker{Group: 7, Stage: RejoinDemoted, CatchUpIndex: 42}))
			damageStore(t, dir)
		}, want{RejoinDamaged, 1, false}},
		{"marker unreadable: treated as damaged", func(t *testing.T, dir string) {
			require.NoError(t, os.WriteFile(RejoinMarkerPath(dir), []byte("{\"stage\":"), 0o644))
		}, want{RejoinDamaged, 1, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeStore(t, 200, 0)
			tc.setup(t, dir)
			m, err := PrepareRejoin(dir, 7, checkPayload, PrepareOptions{})
			require.NoError(t, err)
			if tc.want.marker == "" {
				require.Nil(t, m)
				_, err := os.Stat(RejoinMarkerPath(dir))
				require.True(t, errors.Is(err, os.ErrNotExist))
			} else {
				require.NotNil(t, m)
				require.Equal(t, tc.want.marker, m.Stage)
				onDisk, err := ReadRejoinMarker(dir, 7)
				require.NoError(t, err)
				require.Equal(t, tc.want.marker, onDisk.Stage, "the stage is persisted")
				if m.Stage == RejoinDemoted {
					require.EqualValues(t, 42, m.CatchUpIndex)
				}
			}
			require.Len(t, movedAside(t, dir), tc.want.moved)
			_, err = os.Stat(filepath.Join(dir, raftDBFile))
			require.Equal(t, tc.want.dirKept, err == nil)

			// Preparing again (a crash right after) changes nothing more.
			again, err := PrepareRejoin(dir, 7, checkPayload, PrepareOptions{})
			require.NoError(t, err)
			if m == nil {
				require.Nil(t, again)
			} else {
				require.Equal(t, m.Stage, again.Stage)
			}
			require.Len(t, movedAside(t, dir), tc.want.moved)
		})
	}
}

// A replica whose Raft state is lost is demoted by the leader before it
// starts, catches up as a non-voter and is promoted again: the whole
// protocol over real transports. A non-leader answers NOT_LEADER with the
// leader, which AskLeader follows.
func TestRejoinDemotesCatchesUpAndPromotes(t *testing.T) {
	_, nodes := threeNodes(t)
	groups, fsms := openOnAll(t, nodes, 1)
	leader := waitLeader(t, groups...)
	applyAll(t, groups[leader], entryRange("before", 0, 50)...)
	victim := (leader + 1) % 3
	requireConverged(t, entryRange("before", 0, 50), fsms...)

	require.NoError(t, groups[victim].Close())
	dir := filepath.Join(nodes[victim].dir, "group-1")
	damageStore(t, dir)
	m, err := PrepareRejoin(dir, 1, nil, PrepareOptions{})
	require.NoError(t, err)
	require.Equal(t, RejoinDamaged, m.Stage)

	// The other two still commit.
	applyAll(t, groups[leader], entryRange("during", 0, 20)...)

	// Ask the non-leader first: it points at the leader.
	var peers []string
	for i := range nodes {
		if i != victim && i != leader {
			peers = append(peers, nodes[i].addr)
		}
	}
	peers = append(peers, nodes[leader].addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ask := RejoinRequest{GroupID: 1, NodeID: nodes[victim].id, Step: raftpb.RejoinStep_REJOIN_STEP_DEMOTE, Peers: peers}
	resp, err := nodes[victim].mux.AskLeader(ctx, ask)
	require.NoError(t, err)
	require.Positive(t, resp.GetIndex())
	require.Equal(t, nodes[leader].id, resp.GetLeaderId())
	requireSuffrage(t, groups[leader], nodes[victim].id, hraft.Nonvoter)

	// Promotion of a non-member is refused.
	_, err = nodes[victim].mux.AskLeader(ctx, RejoinRequest{GroupID: 1, NodeID: "n9", Addr: "127.0.0.1:9",
		Step: raftpb.RejoinStep_REJOIN_STEP_PROMOTE, Peers: peers})
	require.True(t, errors.Is(err, ErrNotMember), "%v", err)

	// Restart empty, without bootstrap: the leader fills it in.
	fsm := &testFSM{}
	g := openTestGroup(t, nodes[victim], 1, fsm, nil)
	want := append(entryRange("before", 0, 50), entryRange("during", 0, 20)...)
	requireConverged(t, want, fsm)
	// The demotion's configuration entry follows the entries above: wait
	// until the replica's log holds it (AppliedIndex counts entries handed
	// to the FSM, so it covers configuration entries too) before reading
	// its suffrage.
	require.Eventually(t, func() bool { return g.Raft().AppliedIndex() >= resp.GetIndex() }, 10*time.Second, 10*time.Millisecond)
	voter, err := g.Voter()
	require.NoError(t, err)
	require.False(t, voter)

	ask.Step = raftpb.RejoinStep_REJOIN_STEP_PROMOTE
	_, err = nodes[victim].mux.AskLeader(ctx, ask)
	require.NoError(t, err)
	requireSuffrage(t, groups[leader], nodes[victim].id, hraft.Voter)
	require.Eventually(t, func() bool { v, err := g.Voter(); return err == nil && v }, 10*time.Second, 10*time.Millisecond)
	// Asking again is harmless (a crash before the marker was removed).
	_, err = nodes[victim].mux.AskLeader(ctx, ask)
	require.NoError(t, err)

	applyAll(t, groups[leader], "after")
	requireConverged(t, append(want, "after"), fsm, fsms[leader])
}

func requireSuffrage(t *testing.T, leader *Group, id string, want hraft.ServerSuffrage) {
	t.Helper()
	f := leader.Raft().GetConfiguration()
	require.NoError(t, f.Error())
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			require.Equal(t, want, s.Suffrage)
			return
		}
	}
	t.Fatalf("%s not in the configuration", id)
}

func TestRejoinBackoffIsCappedAndJittered(t *testing.T) {
	var b RejoinBackoff
	seen := map[time.Duration]bool{}
	for range 50 {
		d := b.Next()
		require.LessOrEqual(t, d, rejoinBackoffMaxDuration)
		require.GreaterOrEqual(t, d, rejoinBackoffBaseDuration/2)
		seen[d] = true
	}
	require.Greater(t, len(seen), 10, "jittered")
	b.Reset()
	require.LessOrEqual(t, b.Next(), rejoinBackoffBaseDuration)
}
