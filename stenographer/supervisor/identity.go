package supervisor

import (
	"fmt"
	"os/user"
	"strconv"
)

// identity is the user and group stenotype runs as after it drops
// privileges, worked out as stenotype does: --uid/--gid from its flags
// (names or numbers); as root with neither, nobody and nogroup (or the
// group nobody where nogroup does not exist); not as root, ourselves.
type identity struct {
	uid, gid int
}

func resolveIdentity(uidFlag, gidFlag string, euid, egid int) (identity, error) {
	if uidFlag == "" && gidFlag == "" {
		if euid != 0 {
			return identity{euid, egid}, nil
		}
		uidFlag = "nobody"
		gidFlag = "nogroup"
		if _, err := user.LookupGroup("nogroup"); err != nil {
			gidFlag = "nobody"
		}
	}
	id := identity{euid, egid}
	if uidFlag != "" {
		uid, primary, err := lookupUser(uidFlag)
		if err != nil {
			return identity{}, err
		}
		id = identity{uid, primary}
	}
	if gidFlag != "" {
		gid, err := lookupGroup(gidFlag)
		if err != nil {
			return identity{}, err
		}
		id.gid = gid
	}
	return id, nil
}

// lookupUser returns a user's uid and primary group. A number that names
// no user is used as it is, with the same number as group.
func lookupUser(s string) (uid, gid int, err error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		if u, err := user.LookupId(s); err == nil {
			g, _ := strconv.Atoi(u.Gid)
			return n, g, nil
		}
		return n, n, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		return 0, 0, fmt.Errorf("supervisor: --uid %s: %w", s, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

func lookupGroup(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		return 0, fmt.Errorf("supervisor: --gid %s: %w", s, err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return gid, nil
}
