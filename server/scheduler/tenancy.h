// Who is calling (a tenant and a role, from the caller's token) and what each tenant may use. The
// scheduler checks a job's tenant on every call that names a job: another tenant's job is
// NOT_FOUND, exactly like a job that does not exist; admins see every tenant's jobs.
#ifndef RADIAL_SERVER_SCHEDULER_TENANCY_H_
#define RADIAL_SERVER_SCHEDULER_TENANCY_H_

#include <cstdint>
#include <map>
#include <string>

namespace radial::server {

inline constexpr char kDefaultTenant[] = "default";

struct Caller {
  std::string tenant = kDefaultTenant;
  bool admin = true;
  // A scheduler without a tokens file (loopback only): one tenant, every caller an admin.
  static Caller Unauthenticated() { return Caller{}; }
  bool Sees(const std::string& job_tenant) const { return admin || job_tenant == tenant; }
};

// Per-tenant quotas; 0 means no limit (the queue's capacity still bounds everything).
struct TenantLimits {
  uint32_t max_queued = 0;          // jobs waiting in the queue
  uint32_t max_running = 0;         // jobs on workers at once
  uint32_t submits_per_minute = 0;  // Submit/Generate calls, as a token bucket of this size
};

struct TenancyOptions {
  TenantLimits defaults;                       // for tenants the map does not name
  std::map<std::string, TenantLimits> tenants;  // --tenant-limits FILE
  const TenantLimits& For(const std::string& tenant) const {
    const auto it = tenants.find(tenant);
    return it == tenants.end() ? defaults : it->second;
  }
};

}  // namespace radial::server

#endif  // RADIAL_SERVER_SCHEDULER_TENANCY_H_
