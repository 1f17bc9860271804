pub mod h3client;
