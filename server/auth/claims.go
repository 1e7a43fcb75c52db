package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// The actions a token may allow.
const (
	// ActionProduce allows Produce and InitProducer (WebSocket publish).
	ActionProduce = "produce"
	// ActionConsume allows Fetch and Subscribe (WebSocket subscribe).
	ActionConsume = "consume"
	// ActionGroups allows the consumer group calls, with tenant "*".
	ActionGroups = "groups"
	// ActionAdmin allows everything: the registry, groups' administration
	// and every tenant's data.
	ActionAdmin = "admin"
)

// AllTenants is the tenant claim of a service token that acts for every
// tenant.
const AllTenants = "*"

// Issuer is the iss claim of every Herald token.
const Issuer = "herald"

// Claims are what a token says. The JSON names are the JWT claim names.
type Claims struct {
	// Subject names who holds the token (a service, a user), for logs.
	Subject string `json:"sub"`
	// Issuer is always "herald".
	Issuer string `json:"iss"`
	// IssuedAt, ExpiresAt and NotBefore are Unix seconds; NotBefore 0:
	// none.
	IssuedAt  int64 `json:"iat"`
	ExpiresAt int64 `json:"exp"`
	NotBefore int64 `json:"nbf,omitempty"`
	// ID is the token's id (jti), for logs and future revocation.
	ID string `json:"jti,omitempty"`
	// Tenant is the one tenant the token acts for, or AllTenants.
	Tenant string `json:"tenant"`
	// Actions are the actions allowed (Action*).
	Actions []string `json:"actions"`
	// Topics are the topics allowed: exact names, or prefixes ending in
	// "*". Empty: every topic.
	Topics []string `json:"topics,omitempty"`
}

// Expiry returns when the token expires.
func (c *Claims) Expiry() time.Time { return time.Unix(c.ExpiresAt, 0) }

// IsAdmin reports whether the token allows the admin action, which allows
// everything.
func (c *Claims) IsAdmin() bool {
	for _, a := range c.Actions {
		if a == ActionAdmin {
			return true
		}
	}
	return false
}

// Allows reports whether the token allows action (admin allows every
// action).
func (c *Claims) Allows(action string) bool {
	for _, a := range c.Actions {
		if a == action || a == ActionAdmin {
			return true
		}
	}
	return false
}

// AllowsTopic reports whether the token reaches topic: no topics listed,
// an exact name, or a prefix ending in "*" (admin reaches every topic).
func (c *Claims) AllowsTopic(topic string) bool {
	if len(c.Topics) == 0 || c.IsAdmin() {
		return true
	}
	for _, t := range c.Topics {
		if prefix, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(topic, prefix) {
				return true
			}
		} else if t == topic {
			return true
		}
	}
	return false
}

// AllTenants reports whether the token acts for every tenant (tenant "*",
// or admin).
func (c *Claims) AllTenants() bool { return c.Tenant == AllTenants || c.IsAdmin() }

// AllowsTenant reports whether the token acts for tenant.
func (c *Claims) AllowsTenant(tenant string) bool { return c.AllTenants() || c.Tenant == tenant }

// validActions are the actions a token may name.
var validActions = map[string]bool{ActionProduce: true, ActionConsume: true, ActionGroups: true, ActionAdmin: true}

// Check reports every problem with the claims' shape (not their times):
// what Sign refuses to sign and Verify refuses to accept.
func (c *Claims) Check() error {
	var errs []error
	if c.Subject == "" {
		errs = append(errs, errors.New("auth: subject (sub) is required"))
	}
	if c.Issuer != Issuer {
		errs = append(errs, fmt.Errorf("auth: issuer (iss) %q is not %q", c.Issuer, Issuer))
	}
	if c.IssuedAt <= 0 {
		errs = append(errs, errors.New("auth: issued at (iat) is required"))
	}
	if c.ExpiresAt <= 0 {
		errs = append(errs, errors.New("auth: expiry (exp) is required"))
	} else if c.ExpiresAt <= c.IssuedAt {
		errs = append(errs, errors.New("auth: expiry (exp) is not after issued at (iat)"))
	}
	if c.Tenant == "" {
		errs = append(errs, errors.New("auth: tenant is required (a tenant id, or * for every tenant)"))
	}
	if len(c.Actions) == 0 {
		errs = append(errs, errors.New("auth: at least one action is required"))
	}
	for _, a := range c.Actions {
		if !validActions[a] {
			errs = append(errs, fmt.Errorf("auth: unknown action %q (want produce, consume, groups or admin)", a))
		}
	}
	for _, t := range c.Topics {
		if t == "" || strings.Contains(strings.TrimSuffix(t, "*"), "*") {
			errs = append(errs, fmt.Errorf("auth: topic %q: want a name, or a prefix ending in *", t))
		}
	}
	return errors.Join(errs...)
}
