// Package apiclient is the typed Go client of testum's HTTP API, with the
// types of every request, response and WebSocket message. api.gen.go is
// generated from ../openapi.yaml by oapi-codegen (make generate); it is
// committed and never edited by hand.
package apiclient

//go:generate oapi-codegen -config oapi-codegen.yaml ../openapi.yaml
