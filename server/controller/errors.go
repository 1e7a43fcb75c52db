package controller

import (
	"errors"
	"fmt"
)

// Errors of the Raft entries (command.go). Apply stops the node on both
// rather than skip the entry: skipping would let the replicas diverge.
var (
	// ErrBadEntry marks a Raft entry this version cannot decode.
	ErrBadEntry = errors.New("controller: undecodable entry")
	// ErrDamagedEntry marks an entry that fails its checksum or is too
	// short to hold one: this replica's copy is damaged. It comes with
	// ErrBadEntry.
	ErrDamagedEntry = errors.New("controller: damaged entry")
	// ErrBadSnapshot marks a snapshot that decodes but holds a registry
	// this version cannot serve (a null or misfiled topic or tenant).
	// Restore returns it and leaves the registry as it was.
	ErrBadSnapshot = errors.New("controller: bad snapshot")
)

// Refusals: a command the state machine refused, with the registry left
// unchanged. Each comes as a *NameError naming the topic or tenant; the
// node maps them to its wire errors in one place.
var (
	ErrTopicNotFound  = errors.New("controller: topic not found")
	ErrTopicExists    = errors.New("controller: topic already exists")
	ErrTenantNotFound = errors.New("controller: tenant not found")
	ErrTenantExists   = errors.New("controller: tenant already exists")
)

// NameError is a refusal (ErrTopicNotFound, ErrTopicExists,
// ErrTenantNotFound, ErrTenantExists) with the name it is about.
type NameError struct {
	Err  error
	Name string
}

// Error implements error.
func (e *NameError) Error() string { return fmt.Sprintf("%v: %q", e.Err, e.Name) }

// Unwrap returns the sentinel.
func (e *NameError) Unwrap() error { return e.Err }

// ErrPlacement means a topic's replication factor cannot be placed on the
// nodes its CreateTopic named. A *PlacementError matches it.
var ErrPlacement = errors.New("controller: replication factor cannot be placed")

// PlacementError is ErrPlacement with the numbers.
type PlacementError struct {
	ReplicationFactor uint32
	Nodes             int
}

// Error implements error.
func (e *PlacementError) Error() string {
	return fmt.Sprintf("controller: replication factor %d needs as many nodes; the cluster has %d", e.ReplicationFactor, e.Nodes)
}

// Is reports whether target is ErrPlacement.
func (e *PlacementError) Is(target error) bool { return target == ErrPlacement }
