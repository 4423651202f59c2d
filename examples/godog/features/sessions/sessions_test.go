package sessions

import (
	"testing"

	"example.com/pgisolate-godog/steps"
)

func TestFeatures(t *testing.T) { steps.RunFeatures(t) }
