package client

import (
	"context"

	"github.com/heraldlog/herald/client/heraldpb"
)

// CreateTopic declares a topic and returns it as created. Any node accepts
// it (and forwards to the controller leader). Like Produce it is not
// resent once it may have reached a server: an ambiguous failure wraps
// ErrUnknownOutcome (DescribeTopic tells what happened); a topic of that
// name that exists already gives ErrTopicExists.
func (c *Client) CreateTopic(ctx context.Context, cfg *TopicConfig) (*TopicInfo, error) {
	if cfg.GetName() == "" {
		return nil, InvalidArgument("name", "a topic needs a name")
	}
	req := &heraldpb.CreateTopicRequest{Config: cfg}
	var resp *heraldpb.CreateTopicResponse
	err := c.run(ctx, call{op: "create topic " + cfg.GetName(), mutating: true, do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
		r, err := hc.CreateTopic(ctx, req)
		resp = r
		return err
	}})
	if err != nil {
		return nil, err
	}
	c.meta.updateTopic(resp.GetTopic())
	return resp.GetTopic(), nil
}

// ListTopics returns every topic. It retries transient failures.
func (c *Client) ListTopics(ctx context.Context) ([]*TopicInfo, error) {
	var resp *heraldpb.ListTopicsResponse
	err := c.run(ctx, call{op: "list topics", do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
		r, err := hc.ListTopics(ctx, &heraldpb.ListTopicsRequest{})
		resp = r
		return err
	}})
	if err != nil {
		return nil, err
	}
	return resp.GetTopics(), nil
}

// DescribeTopic returns one topic, or an error matching ErrTopicNotFound.
// It refreshes the topic's routes in the cache and retries transient
// failures.
func (c *Client) DescribeTopic(ctx context.Context, name string) (*TopicInfo, error) {
	if name == "" {
		return nil, InvalidArgument("name", "a topic needs a name")
	}
	var resp *heraldpb.DescribeTopicResponse
	err := c.run(ctx, call{op: "describe topic " + name, do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
		r, err := hc.DescribeTopic(ctx, &heraldpb.DescribeTopicRequest{Name: name})
		resp = r
		return err
	}})
	if err != nil {
		return nil, err
	}
	c.meta.updateTopic(resp.GetTopic())
	return resp.GetTopic(), nil
}

// ClusterStatus returns the nodes and every partition's replication state
// as seen by the answering node. It retries transient failures.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatusResponse, error) {
	var resp *heraldpb.ClusterStatusResponse
	err := c.run(ctx, call{op: "cluster status", do: func(ctx context.Context, hc heraldpb.HeraldClient) error {
		r, err := hc.ClusterStatus(ctx, &heraldpb.ClusterStatusRequest{})
		resp = r
		return err
	}})
	if err != nil {
		return nil, err
	}
	return resp, nil
}
