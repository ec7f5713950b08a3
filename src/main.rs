fn main() {
    std::process::exit(peerstage::run());
}
