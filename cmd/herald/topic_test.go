package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
	"github.com/heraldlog/herald/client/heraldpb"
	"github.com/heraldlog/herald/client/wire"
)

// The alter and create commands have a flag for every field the protocol
// lets AlterTopic change, named by alterableFlag: a field added to
// wire.AlterableFields without a flag fails here.
func TestEveryAlterableFieldHasAFlag(t *testing.T) {
	alter := newTopicAlterCommand(&clientOptions{})
	create := newTopicCreateCommand(&clientOptions{})
	for _, field := range wire.AlterableFields() {
		flag := alterableFlag(field)
		assert.NotNil(t, alter.Flags().Lookup(flag), "topic alter has no --%s for %s", flag, field)
		assert.NotNil(t, create.Flags().Lookup(flag), "topic create has no --%s for %s", flag, field)
	}
	assert.Equal(t, "retention-age", alterableFlag("retention_age_ms"))
	assert.Equal(t, "auto-tenants", alterableFlag("auto_tenants"))
}

// --protect-group takes GROUP:SLOW:PAUSE, repeated, or none; describe
// shows the groups with the stages they have.
func TestProtectGroupFlag(t *testing.T) {
	create := newTopicCreateCommand(&clientOptions{})
	require.NoError(t, create.ParseFlags([]string{"--protect-group", "billing:100:200", "--protect-group", "audit:0:50"}))
	flag := create.Flags().Lookup("protect-group")
	assert.Equal(t, "billing:100:200,audit:0:50", flag.Value.String())

	var groups []*heraldpb.ProtectedGroup
	f := protectFlag{&groups}
	for _, bad := range []string{"billing", "billing:1", ":1:2", "billing:x:2", "billing:1:-2", "billing:1:2:3"} {
		assert.Error(t, f.Set(bad), bad)
	}
	require.NoError(t, f.Set("a:1:2"))
	require.NoError(t, f.Set(protectNone))
	assert.Equal(t, []*heraldpb.ProtectedGroup{}, groups, "none clears the list")

	var out strings.Builder
	require.NoError(t, printTopic(&out, &client.TopicInfo{Config: &client.TopicConfig{Name: "orders", ProtectedGroups: []*heraldpb.ProtectedGroup{
		{Group: "billing", SlowLag: 100, PauseLag: 200}, {Group: "audit", PauseLag: 50}, {Group: "search", SlowLag: 10}}}}, false))
	assert.Contains(t, out.String(), "protected groups: billing (slow 100, pause 200), audit (pause 50), search (slow 10)\n")
	out.Reset()
	require.NoError(t, printTopic(&out, &client.TopicInfo{Config: &client.TopicConfig{Name: "orders"}}, false))
	assert.Contains(t, out.String(), "protected groups: -\n")
	out.Reset()
	require.NoError(t, printTopic(&out, &client.TopicInfo{Config: &client.TopicConfig{Name: "orders", ProtectedGroups: []*heraldpb.ProtectedGroup{
		{Group: "billing", SlowLag: 100, PauseLag: 200}}}}, true))
	assert.Contains(t, out.String(), `"protected_groups":[{"group":"billing","slow_lag":100,"pause_lag":200}]`)
}
