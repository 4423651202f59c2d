package pgisolate

// Links the static library `make build` leaves in the repository (cargo build -p
// pgisolate-ffi). The release module made by `make dist` has link.go instead, whose flags
// point inside the module: lib/<platform>/libpgisolate.a and include/.

/*
#cgo CFLAGS: -I${SRCDIR}/../include
#cgo LDFLAGS: ${SRCDIR}/../target/debug/libpgisolate.a -lpthread -ldl -lm -lutil -lrt
*/
import "C"
