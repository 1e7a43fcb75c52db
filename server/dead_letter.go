package server

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/heraldlog/herald/client/wire"
)

// A topic's dead-letter topic (TopicConfig.dead_letter_topic) is where its
// consumer groups put an event delivered max-deliveries times without an
// acknowledgement. The contract only names it; the checks below run on
// the controller leader before a create, alter or delete is proposed.
//
// They are not part of the registry's state machine, so two concurrent
// calls (an alter naming topic B and a delete of B) can both pass; the
// consumer side must treat a dead-letter topic that no longer exists as
// "none" and say so.

// checkDeadLetterTopic checks the dead-letter topic dlt that topic name
// would have: empty, or another topic that exists (after a registry sync
// on a miss, as lookupTopic does). A bad one is INVALID_ARGUMENT.
func (n *Node) checkDeadLetterTopic(ctx context.Context, name, dlt string) error {
	if dlt == "" {
		return nil
	}
	if dlt == name {
		return wire.InvalidArgument("dead_letter_topic", "topic %s cannot be its own dead-letter topic", name)
	}
	if _, err := n.lookupTopic(ctx, dlt); err != nil {
		if errors.Is(err, wire.ErrTopicNotFound) {
			return wire.InvalidArgument("dead_letter_topic", "dead-letter topic %q of topic %s does not exist; create it first", dlt, name)
		}
		return err
	}
	return nil
}

// checkNotDeadLetterTarget refuses to delete topic name while other topics
// name it as their dead-letter topic.
func (n *Node) checkNotDeadLetterTarget(name string) error {
	var users []string
	for _, t := range n.controllerFSM.Topics() {
		if t.DeadLetterTopic == name && t.Name != name {
			users = append(users, t.Name)
		}
	}
	if len(users) == 0 {
		return nil
	}
	slices.Sort(users)
	return wire.InvalidArgument("name", "topic %s is the dead-letter topic of %s; alter their dead_letter_topic first", name, strings.Join(users, ", "))
}
