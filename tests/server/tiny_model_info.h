// The model a fake worker announces in the scheduler and client tests: Wan2.1-like limits at a
// small size (64..256 pixels in multiples of 16, 4k+1 frames up to 33, 1..50 steps).
#ifndef RADIAL_TESTS_SERVER_TINY_MODEL_INFO_H_
#define RADIAL_TESTS_SERVER_TINY_MODEL_INFO_H_

#include "radial/v1/video_service.pb.h"

namespace radial::testing {

inline v1::ModelInfo TinyModelInfo() {
  v1::ModelInfo model;
  model.set_name("tiny");
  model.set_architecture("wan2.1");
  for (v1::Range* range : {model.mutable_width(), model.mutable_height()}) {
    range->set_min(64);
    range->set_max(256);
  }
  model.set_size_multiple(16);
  model.mutable_frames()->set_min(1);
  model.mutable_frames()->set_max(33);
  model.set_frame_step(4);
  model.mutable_steps()->set_min(1);
  model.mutable_steps()->set_max(50);
  model.set_guidance_max(20);
  model.set_prompt_max_chars(100);
  model.set_layers(2);
  v1::GenerateRequest& defaults = *model.mutable_defaults();
  defaults.set_width(128);
  defaults.set_height(128);
  defaults.set_frames(17);
  defaults.set_fps(16);
  defaults.set_steps(4);
  defaults.set_guidance(5);
  defaults.mutable_radial()->set_decay(1);
  defaults.mutable_radial()->set_block(64);
  return model;
}

}  // namespace radial::testing

#endif  // RADIAL_TESTS_SERVER_TINY_MODEL_INFO_H_
