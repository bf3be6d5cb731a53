#pragma once
// A tmpfs of a few pages, mounted for one test so that ENOSPC is real.
// Mounting needs CAP_SYS_ADMIN: without it mounted() is false and the test
// has nothing to check (tests/integration/store_enospc.sh covers a full disk
// on a real daemon). Unmounted (lazily) when the object goes.

#include <cerrno>
#include <cstring>
#include <string>
#include <sys/mount.h>
#include <sys/stat.h>
#include <utility>

class SmallTmpfs {
public:
    // Creates `dir` and mounts a tmpfs of `size` bytes ("64k") on it.
    SmallTmpfs(std::string dir, const char* size) : dir_(std::move(dir)) {
        const std::string options = std::string("size=") + size;
        if (::mkdir(dir_.c_str(), 0755) != 0 && errno != EEXIST) {
            error_ = "mkdir " + dir_ + ": " + std::strerror(errno);
            return;
        }
        if (::mount("tmpfs", dir_.c_str(), "tmpfs", 0, options.c_str()) != 0) {
            error_ = "mount tmpfs on " + dir_ + ": " + std::strerror(errno);
            return;
        }
        mounted_ = true;
    }
    ~SmallTmpfs() {
        if (mounted_) (void)::umount2(dir_.c_str(), MNT_DETACH);
    }
    SmallTmpfs(const SmallTmpfs&) = delete;
    SmallTmpfs& operator=(const SmallTmpfs&) = delete;

    bool mounted() const { return mounted_; }
    const std::string& path() const { return dir_; }
    const std::string& error() const { return error_; } // why it is not mounted

private:
    std::string dir_;
    std::string error_;
    bool mounted_ = false;
};
