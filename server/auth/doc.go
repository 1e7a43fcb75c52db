// Package auth issues and checks Herald's client credentials: signed
// tokens (compact JWS, JWT claims) naming a tenant, the actions and the
// topics they allow (docs/protocol.md, "Credentials").
//
// A token is a JWT signed with Ed25519 (alg "EdDSA", RFC 8037). Nothing
// else is accepted: a token whose header names another algorithm (none,
// HS256, RS256, ...) is refused before its signature is looked at, so a
// public key can never be used as an HMAC secret (algorithm confusion).
//
// The duties of each side:
//
//  1. An operator makes a key pair (GenerateKey, MarshalPrivateKey,
//     MarshalPublicKey: `herald token keygen`), keeps the private key
//     and gives the public key file to every node (`herald serve
//     --auth-keys`). Several public keys in one file allow rotation: a
//     token signed by any of them is valid.
//  2. The operator signs tokens (Sign: `herald token create`); the
//     header's kid is KeyID of the public key.
//  3. A node's Verifier checks each request's token (Verify): size,
//     algorithm, key id, signature, issuer, expiry and not-before (with
//     Leeway), and the claims' shape. It reads the keys file again when
//     the file changes.
//  4. The node then asks the Claims what they allow (Allows, AllowsTopic,
//     AllowsTenant); the server package's authz decides per method.
//
// Version note: the claims are herald.v1's; unknown claims are ignored,
// unknown actions refused.
package auth
