package wire

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/heraldlog/herald/client/heraldpb"
)

// Each envelope field is a field of Event, and HasEnvelopeField sees it set
// exactly when the proto field is populated.
func TestEnvelopeFieldsAreEventFields(t *testing.T) {
	desc := (&heraldpb.Event{}).ProtoReflect().Descriptor().Fields()
	for _, name := range EnvelopeFields() {
		fd := desc.ByName(protoreflect.Name(name))
		require.NotNil(t, fd, "%s is not a field of Event", name)
		assert.True(t, IsEnvelopeField(name))

		e := &heraldpb.Event{}
		assert.False(t, HasEnvelopeField(e, name), "%s unset", name)
		m := e.ProtoReflect()
		if fd.Kind() == protoreflect.BytesKind {
			m.Set(fd, protoreflect.ValueOfBytes([]byte("x")))
		} else {
			m.Set(fd, protoreflect.ValueOfString("x"))
		}
		assert.True(t, HasEnvelopeField(e, name), "%s set", name)
	}
	assert.False(t, IsEnvelopeField("payload"))
	assert.True(t, HasEnvelopeField(&heraldpb.Event{}, "payload"), "a name that is not an envelope field counts as set")
}

// Each alterable field is a field of TopicConfig, AlterTopicConfig copies
// exactly the fields named, and refuses an unknown name leaving dst as is.
func TestAlterTopicConfig(t *testing.T) {
	desc := (&heraldpb.TopicConfig{}).ProtoReflect().Descriptor().Fields()
	src := &heraldpb.TopicConfig{
		Name: "src", RetentionAgeMs: 1, RetentionBytes: 2, RetentionEvents: 3, DefaultTtlMs: 4, MaxTtlMs: 5,
		DedupeWindowMs: 6, SchemaVersions: []uint32{7}, AutoTenants: true, Partitions: 9,
		DeadLetterTopic: "dlq", ProtectedGroups: []*heraldpb.ProtectedGroup{{Group: "g", SlowLag: 10, PauseLag: 20}},
	}
	for _, name := range AlterableFields() {
		fd := desc.ByName(protoreflect.Name(name))
		require.NotNil(t, fd, "%s is not a field of TopicConfig", name)
		dst := &heraldpb.TopicConfig{Name: "dst"}
		require.NoError(t, AlterTopicConfig(dst, src, []string{name}))
		want := &heraldpb.TopicConfig{Name: "dst"}
		want.ProtoReflect().Set(fd, src.ProtoReflect().Get(fd))
		assert.True(t, proto.Equal(want, dst), "altering %s gave %v", name, dst)
	}

	dst := &heraldpb.TopicConfig{Name: "dst"}
	err := AlterTopicConfig(dst, src, []string{"retention_bytes", "partitions"})
	assert.ErrorIs(t, err, ErrInvalidArgument)
	assert.Contains(t, err.Error(), `"partitions" cannot be altered`)
	assert.True(t, proto.Equal(&heraldpb.TopicConfig{Name: "dst"}, dst), "nothing altered on a refusal")
}
