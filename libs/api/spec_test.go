package api

import (
	"encoding/json"
	"reflect"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestOpenAPIJSONIsTheYAML(t *testing.T) {
	b, err := OpenAPIJSON()
	if err != nil {
		t.Fatal(err)
	}
	var fromJSON, fromYAML any
	if err := json.Unmarshal(b, &fromJSON); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if err := yaml.Unmarshal(OpenAPIYAML(), &fromYAML); err != nil {
		t.Fatal(err)
	}
	// Round-trip the YAML through JSON too, so numbers compare as float64.
	y, _ := jsonValue(fromYAML)
	yb, err := json.Marshal(y)
	if err != nil {
		t.Fatal(err)
	}
	var want any
	_ = json.Unmarshal(yb, &want)
	if !reflect.DeepEqual(fromJSON, want) {
		t.Error("the JSON document differs from the YAML")
	}
	if doc := fromJSON.(map[string]any); doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v", doc["openapi"])
	}
}

// A mapping with keys that are not strings (an unquoted status code)
// becomes a JSON object.
func TestJSONValueOfNonStringKeys(t *testing.T) {
	var v any
	if err := yaml.Unmarshal([]byte("responses:\n  200: {description: ok}\n  default: {description: error}\n"), &v); err != nil {
		t.Fatal(err)
	}
	j, err := jsonValue(v)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(j)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if got, want := string(b), `{"responses":{"200":{"description":"ok"},"default":{"description":"error"}}}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}
