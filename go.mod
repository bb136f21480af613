module github.com/stenographer-ng/stenographer

go 1.26.8

require (
	github.com/google/gopacket v1.1.19
	github.com/syndtr/goleveldb v1.0.0
	golang.org/x/sys v0.49.0
)

require (
	github.com/golang/snappy v0.0.0-20180518054509-2e65f85255db // indirect
	golang.org/x/net v0.0.0-20190620200207-3b0461eec859 // indirect
)
