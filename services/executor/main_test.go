package executor

import (
	"os"
	"testing"

	"github.com/testum/testum/libs/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
