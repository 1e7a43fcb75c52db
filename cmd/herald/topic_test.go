package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

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
