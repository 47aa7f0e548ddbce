#include "app/app.h"

int main(int argc, char** argv) { return taskhub::app::run(argc, argv); }
