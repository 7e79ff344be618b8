package netstack

import (
	"context"
	"errors"
)

func newKernel(context.Context, *Stack) (engine, error) {
	return nil, errors.New("netstack: kernel mode: not yet")
}
