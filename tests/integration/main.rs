mod edge;
mod fakes;
