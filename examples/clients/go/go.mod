// The Go stubs of tokvec.v1 (generated here by proto/buf.gen.go.yaml; the protos' go_package
// names this module) and a small client command, cmd/tokvec-embed. The versions are Debian 12's
// packages, which is what the test suite builds against (offline, GOPATH mode).
module tokvec.dev/gen/go

go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
