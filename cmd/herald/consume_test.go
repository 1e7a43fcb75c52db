package main

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/heraldlog/herald/client"
)

func TestParseFrom(t *testing.T) {
	cases := []struct {
		in      string
		tenant  bool
		want    startPoint
		wantErr string
	}{
		{in: "earliest", want: startPoint{kind: fromEarliest}},
		{in: "latest", tenant: true, want: startPoint{kind: fromLatest}},
		{in: "offset:0", want: startPoint{kind: fromOffset, n: 0}},
		{in: "offset:18446744073709551615", want: startPoint{kind: fromOffset, n: 1<<64 - 1}},
		{in: "seq:7", tenant: true, want: startPoint{kind: fromSequence, n: 7}},
		{in: "offset:x", wantErr: `"x" is not a non-negative integer`},
		{in: "offset:-1", wantErr: "not a non-negative integer"},
		{in: "offset:", wantErr: "not a non-negative integer"},
		{in: "seq:", tenant: true, wantErr: "not a non-negative integer"},
		{in: "seq:3", wantErr: "needs --tenant"},
		{in: "seq:0", tenant: true, wantErr: "start at 1"},
		{in: "time:2025-01-02T03:04:05Z", want: startPoint{kind: fromTime, at: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano()}},
		{in: "time:2025-01-02T03:04:05.5+01:00", tenant: true, want: startPoint{kind: fromTime, at: time.Date(2025, 1, 2, 2, 4, 5, 5e8, time.UTC).UnixNano()}},
		{in: "foo", wantErr: "want earliest, latest, offset:N, seq:N or time:RFC3339"},
		{in: "time:3", wantErr: `"3" is not an RFC 3339 time`},
		{in: "time:2025-01-02", wantErr: "not an RFC 3339 time"},
		{in: "time:", wantErr: "not an RFC 3339 time"},
		{in: "time:2999-01-01T00:00:00Z", wantErr: "want a time from 1677-09-21T00:12:43Z to 2262-04-11T23:47:16Z"},
		{in: "", wantErr: "want earliest"},
		{in: "Earliest", wantErr: "want earliest"},
	}
	for _, tc := range cases {
		got, err := parseFrom(tc.in, tc.tenant)
		if tc.wantErr != "" {
			require.Error(t, err, tc.in)
			assert.Contains(t, err.Error(), tc.wantErr, tc.in)
			var usage usageError
			assert.True(t, errors.As(err, &usage), "%q is a usage error", tc.in)
			assert.Equal(t, exitUsage, exitCode(err))
			continue
		}
		require.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
}

func TestStartPointRequest(t *testing.T) {
	tenantReq := func(p startPoint) *client.FetchRequest { return p.request("orders", 2, "acme") }
	partitionReq := func(p startPoint) *client.FetchRequest { return p.request("orders", 1, "") }

	assert.Equal(t, uint64(1), tenantReq(startPoint{kind: fromEarliest}).GetSequence(), "a tenant's earliest is seq:1")
	assert.Equal(t, "acme", tenantReq(startPoint{kind: fromEarliest}).GetTenantId())
	assert.Equal(t, uint64(9), tenantReq(startPoint{kind: fromSequence, n: 9}).GetSequence())
	offsetScan := tenantReq(startPoint{kind: fromOffset, n: 4})
	assert.Equal(t, uint64(4), offsetScan.GetOffset())
	assert.Equal(t, "acme", offsetScan.GetTenantId(), "an offset scan is filtered by tenant")
	assert.Equal(t, client.Latest, tenantReq(startPoint{kind: fromLatest}).GetPosition())

	assert.Equal(t, client.Earliest, partitionReq(startPoint{kind: fromEarliest}).GetPosition(), "a partition's earliest is its low watermark")
	assert.Equal(t, uint64(5), partitionReq(startPoint{kind: fromOffset, n: 5}).GetOffset())
	assert.Equal(t, uint32(1), partitionReq(startPoint{kind: fromOffset, n: 5}).GetPartition())
	assert.Equal(t, client.Latest, partitionReq(startPoint{kind: fromLatest}).GetPosition())
	assert.Equal(t, int64(42), partitionReq(startPoint{kind: fromTime, at: 42}).GetTimeUnixNano())
	assert.Equal(t, "acme", tenantReq(startPoint{kind: fromTime, at: 42}).GetTenantId(), "a time read is filtered by tenant")
}
