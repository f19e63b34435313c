# Helpers shared by every component: warnings on our own targets only, and one way to register tests.

# Strict warnings for a target of ours (never for third-party code).
# -Wrestrict is exempt: GCC 12 reports it falsely inside std::string concatenation (GCC bug 105329).
function(radial_strict_warnings target)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-restrict>)
endfunction()

# radial_add_gtest(NAME name SOURCES ... LIBS ... LABELS unit|integration|gpu ...)
function(radial_add_gtest)
  cmake_parse_arguments(ARG "" "NAME" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${ARG_NAME} ${ARG_SOURCES})
  target_link_libraries(${ARG_NAME} PRIVATE ${ARG_LIBS} GTest::gtest GTest::gtest_main)
  radial_strict_warnings(${ARG_NAME})
  add_test(NAME ${ARG_NAME} COMMAND ${ARG_NAME})
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}")
endfunction()

# radial_add_pytest(NAME name FILE path LABELS ... [ENV VAR=value ...])
function(radial_add_pytest)
  cmake_parse_arguments(ARG "" "NAME;FILE" "LABELS;ENV" ${ARGN})
  add_test(NAME ${ARG_NAME}
           COMMAND "${RADIAL_PYTHON}" -m pytest -q -p no:cacheprovider "${ARG_FILE}"
           WORKING_DIRECTORY "${CMAKE_SOURCE_DIR}")
  set_tests_properties(${ARG_NAME} PROPERTIES LABELS "${ARG_LABELS}"
                       ENVIRONMENT "RADIAL_OPS_LIBRARY=$<TARGET_FILE:radial_ops>;${ARG_ENV}")
endfunction()
