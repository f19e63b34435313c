// A minimal byte stream that passes the scheduler's worker-video check (ftyp, moov, then one
// moof + mdat whose trun declares `frames` samples), for fake workers in tests. Not playable: the
// moov and mdat contents are filler; the real encoder's output is tested in tests/worker/.
#ifndef RADIAL_TESTS_SERVER_FAKE_FMP4_H_
#define RADIAL_TESTS_SERVER_FAKE_FMP4_H_

#include <cstdint>
#include <string>

namespace radial::testing {

inline void AppendU32(std::string& out, uint32_t value) {
  for (int shift = 24; shift >= 0; shift -= 8) out += static_cast<char>((value >> shift) & 0xff);
}

inline std::string Box(const char* type, const std::string& body) {
  std::string box;
  AppendU32(box, static_cast<uint32_t>(8 + body.size()));
  box += type;
  return box + body;
}

// `frames` samples in one fragment; `filler` bytes of mdat (and of moov) so tests can make videos
// of a given size.
inline std::string FakeFmp4(uint32_t frames, size_t filler = 64) {
  std::string mfhd_body(4, '\0');
  AppendU32(mfhd_body, 1);  // sequence number
  std::string tfhd_body;
  AppendU32(tfhd_body, 0x020000);  // version 0, flags: default-base-is-moof
  AppendU32(tfhd_body, 1);         // track id
  std::string trun_body;
  AppendU32(trun_body, 0);  // version 0, no optional fields
  AppendU32(trun_body, frames);
  const std::string moof = Box("moof", Box("mfhd", mfhd_body) + Box("traf", Box("tfhd", tfhd_body) + Box("trun", trun_body)));
  return Box("ftyp", std::string("isom\0\0\2\0isomiso6", 16)) + Box("moov", std::string(filler, 'm')) + moof +
         Box("mdat", std::string(filler, 'd'));
}

}  // namespace radial::testing

#endif  // RADIAL_TESTS_SERVER_FAKE_FMP4_H_
